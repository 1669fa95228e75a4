"""The UMEI tables (their own metadata, created by migration 0005).

Orders, baselines and meter readings keep UMEI's own fields beside lemgrid's: an order points at
the flexibility offer it became (``flex_offers.offer_id``), so the DSO's clearing, its
activations and their ledger records stay those of :mod:`lemgrid.service.grid`.
"""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

challenges = sa.Table(
    "umei_challenges", METADATA,
    sa.Column("challenge", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False))

tokens = sa.Table(
    "umei_tokens", METADATA,
    sa.Column("token_id", sa.String(64), primary_key=True),  # SHA-256 of the token
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False))

orders = sa.Table(
    "umei_orders", METADATA,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("offer_id", sa.String(200), nullable=False, unique=True),
    sa.Column("owner", sa.String(200), nullable=False),  # the FSP (identity) that posted it
    sa.Column("portfolio_id", sa.String(200), nullable=False),
    sa.Column("grid_node_id", sa.String(200), nullable=False),
    sa.Column("market_id", sa.String(200), nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),
    sa.Column("power_w", sa.BigInteger, nullable=False),
    sa.Column("price_meur_per_kwh", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # an order of the long-term activation market: the capacity order it calls (revision 0015)
    sa.Column("longflex_contract_id", sa.String(200), nullable=True))

baselines = sa.Table(
    "umei_baselines", METADATA,
    sa.Column("baseline_id", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("portfolio_id", sa.String(200), nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("p_w", sa.BigInteger, nullable=False),  # net injection [W], + = production
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("portfolio_id", "interval"))

meter_readings = sa.Table(
    "umei_meter_readings", METADATA,
    sa.Column("reading_id", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("portfolio_id", sa.String(200), nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("p_w", sa.BigInteger, nullable=False),  # mean net injection [W]
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("portfolio_id", "interval"))
