"""The server's own tables (SQLAlchemy Core); the ledger's ``ledger_*`` tables sit beside them in
the same database (:mod:`lemgrid.ledger.sqldb`)."""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

identities = sa.Table(
    "identities", METADATA,
    sa.Column("participant", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("meter", sa.String(200), nullable=False),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("pop_sig", sa.String(128), nullable=False),
    sa.Column("members", sa.Text, nullable=False, default=""),  # aggregator: comma-separated
    sa.Column("approved", sa.Boolean, nullable=False, default=False))

idempotency = sa.Table(
    "idempotency", METADATA,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("idem_key", sa.String(200), primary_key=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False))

sessions = sa.Table(
    "sessions", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("mechanism", sa.String(20), nullable=False),
    sa.Column("gate_ms", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(20), nullable=False))  # open -> settled

orders = sa.Table(
    "orders", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("participant", sa.String(200), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity_wh", sa.BigInteger, nullable=False),
    sa.Column("price_meur_per_kwh", sa.BigInteger, nullable=False),
    sa.Column("arrival", sa.BigInteger, nullable=False),  # ledger position: arrival order
    sa.Column("status", sa.String(12), nullable=False),  # open, cancelled, expired, cleared
    sa.Column("filled_wh", sa.BigInteger, nullable=False, default=0),
    # a continuous-session order's validity [ms since the epoch]; none: until the gate (0011)
    sa.Column("valid_until_ms", sa.BigInteger, nullable=True))

capabilities = sa.Table(
    "capabilities", METADATA,
    sa.Column("participant", sa.String(200), primary_key=True),
    sa.Column("interval", sa.Integer, primary_key=True),
    sa.Column("sellable_wh", sa.BigInteger, nullable=False))

trades = sa.Table(
    "trades", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("trade_id", sa.String(200), primary_key=True),
    sa.Column("buyer", sa.String(200), nullable=False),
    sa.Column("seller", sa.String(200), nullable=False),
    sa.Column("buy_order_id", sa.String(200), nullable=False),
    sa.Column("sell_order_id", sa.String(200), nullable=False),
    sa.Column("quantity_wh", sa.BigInteger, nullable=False),
    sa.Column("price_meur_per_kwh", sa.BigInteger, nullable=False),
    # The trade's ledger position: the order trades were made in (revision 0005).
    sa.Column("seq", sa.BigInteger, nullable=True))

statements = sa.Table(
    "statements", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("participant", sa.String(200), primary_key=True),
    sa.Column("amount_ueur", sa.BigInteger, nullable=False))

# -- delivery: metering and settlement of delivered sessions (revision 0002) ----------------
deliveries = sa.Table(
    "deliveries", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("readings_deadline_ms", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # metering -> settled
    sa.Column("budget_gap_ueur", sa.BigInteger, nullable=True))

meter_readings = sa.Table(
    "meter_readings", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("meter", sa.String(200), primary_key=True),
    sa.Column("participant", sa.String(200), nullable=False),
    sa.Column("import_wh", sa.BigInteger, nullable=False),
    sa.Column("export_wh", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False))

delivery_statements = sa.Table(
    "delivery_statements", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("participant", sa.String(200), primary_key=True),
    sa.Column("total_ueur", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the ledger statement payload, JSON
    sa.Column("seq", sa.BigInteger, nullable=False))

DELIVERY_TABLES = (deliveries, meter_readings, delivery_statements)

# -- sealed-bid sessions: commit and reveal windows (revision 0003) -------------------------
sealed_sessions = sa.Table(
    "sealed_sessions", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("reveal_ms", sa.BigInteger, nullable=False))  # end of the reveal window

commitments = sa.Table(
    "commitments", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("commitment", sa.String(64), primary_key=True),
    sa.Column("participant", sa.String(200), nullable=False),
    sa.Column("state", sa.String(12), nullable=False),  # open, revealed, rejected
    sa.Column("seq", sa.BigInteger, nullable=False))

SEALED_TABLES = (sealed_sessions, commitments)

# -- community sessions: the manager's terms, the members' bids and results (revision 0008) ----
community_sessions = sa.Table(
    "community_sessions", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("terms", sa.Text, nullable=False))  # the operator's session body, JSON

community_bids = sa.Table(
    "community_bids", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("participant", sa.String(200), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),  # the signed community-bid payload, JSON
    sa.Column("seq", sa.BigInteger, nullable=False))

community_results = sa.Table(
    "community_results", METADATA,
    sa.Column("market_id", sa.String(200), primary_key=True),
    sa.Column("participant", sa.String(200), primary_key=True),  # "" for the public part
    sa.Column("body", sa.Text, nullable=False))

COMMUNITY_TABLES = (community_sessions, community_bids, community_results)
