"""Shared fixtures for the ledger tests: a small world of registered participants."""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.ledger.identity import generate_key, registration_payload, sign_record
from lemgrid.ledger.records import SignedRecord, order_payload
from lemgrid.ledger.store import Ledger

PARTICIPANTS = ("alice", "bob", "carol", "dave")
CAPABILITY_WH = 5_000


@dataclass
class World:
    """A ledger with four registered participants, each able to sell 5 kWh in interval 1."""

    path: Path
    ledger: Ledger
    operator: Ed25519PrivateKey
    keys: dict[str, Ed25519PrivateKey]
    _nonce: itertools.count = field(default_factory=itertools.count)

    def nonce(self) -> str:
        return f"n{next(self._nonce)}"

    def order(self, participant: str, order_id: str, side: str = "sell", quantity_wh: int = 1000,
              price: int = 200, market: str = "m", interval: int | str = 1,
              nonce: str | None = None, key: Ed25519PrivateKey | None = None) -> SignedRecord:
        payload = order_payload(log_id=self.ledger.log_id, market_id=market, interval=interval,
                                order_id=order_id,
                                participant=participant, meter=f"meter-{participant}",
                                side=side, quantity_wh=quantity_wh, price_meur_per_kwh=price,
                                nonce=nonce or self.nonce())
        return sign_record(key or self.keys[participant], payload)

    def trade(self, trade_id: str, seller: str, buyer: str, quantity_wh: int = 1000,
              price: int = 200, market: str = "m", interval: int | str = 1, **orders) -> dict:
        return {"kind": "trade", "market_id": market, "interval": interval, "trade_id": trade_id,
                "seller": seller, "buyer": buyer, "quantity_wh": quantity_wh,
                "price_meur_per_kwh": price, **orders}

    def rows(self, table: str) -> int:
        with sqlite3.connect(self.path) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def make_world(tmp_path: Path, intervals=(1,)) -> World:
    operator = generate_key()
    path = tmp_path / "ledger.db"
    ledger = Ledger.create(path, operator, created_ms=1_700_000_000_000)
    keys = {p: generate_key() for p in PARTICIPANTS}
    ledger.append_operator([registration_payload(k, p, f"meter-{p}", ledger.log_id)
                            for p, k in keys.items()])
    ledger.append_operator([{"kind": "capability", "participant": p, "interval": i,
                             "sellable_wh": CAPABILITY_WH, "source": "forecast"}
                            for p in PARTICIPANTS for i in intervals])
    return World(path, ledger, operator, keys)


@pytest.fixture
def world(tmp_path: Path):
    w = make_world(tmp_path)
    yield w
    w.ledger.close()
