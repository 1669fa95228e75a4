"""The ledger's tables in a SQL database (SQLAlchemy Core): appends inside a caller's
transaction commit or roll back with the caller's own rows, and `lemgrid ledger verify` reads the
database by URL."""

from __future__ import annotations

import sqlalchemy as sa
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.ledger.identity import generate_key, registration_payload, sign_record
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.records import order_payload
from lemgrid.ledger.sqldb import make_engine
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import verify_ledger

import pytest

EFFECTS = sa.Table("effects", sa.MetaData(), sa.Column("order_id", sa.String, primary_key=True))


def _world(tmp_path):
    url = f"sqlite:///{tmp_path / 'server.db'}"
    engine = make_engine(url)
    EFFECTS.metadata.create_all(engine)
    operator, alice = generate_key(), generate_key()
    ledger = Ledger.create_sql(engine, operator)
    ledger.append_operator([registration_payload(alice, "alice", "m-a", ledger.log_id)])
    return url, engine, ledger, alice


def _order(ledger, key, order_id, nonce):
    return sign_record(key, order_payload(
        log_id=ledger.log_id, market_id="m", interval=1, order_id=order_id, participant="alice",
        meter="m-a", side="buy", quantity_wh=1000, price_meur_per_kwh=200, nonce=nonce))


def test_effect_and_record_commit_together_and_roll_back_together(tmp_path):
    url, engine, ledger, alice = _world(tmp_path)
    with engine.begin() as conn, ledger.transaction(conn) as tx:
        tx.append([_order(ledger, alice, "o1", "n1")])
        conn.execute(EFFECTS.insert().values(order_id="o1"))
    size = ledger.size
    with pytest.raises(RuntimeError):
        with engine.begin() as conn, ledger.transaction(conn) as tx:
            tx.append([_order(ledger, alice, "o2", "n2")])
            conn.execute(EFFECTS.insert().values(order_id="o2"))
            raise RuntimeError("crash after both writes, before commit")
    assert ledger.size == size  # in-memory state rolled back with the database
    with engine.connect() as conn:
        assert [r[0] for r in conn.execute(sa.select(EFFECTS.c.order_id))] == ["o1"]
    with pytest.raises(Rejection, match="replayed nonce"):
        with engine.begin() as conn, ledger.transaction(conn) as tx:
            tx.append([_order(ledger, alice, "o3", "n1")])
    ledger.append([], checkpoint=True)
    reopened = Ledger.open_sql(engine)
    assert (reopened.size, reopened.root()) == (ledger.size, ledger.root())
    report = verify_ledger(url)
    assert report.ok and report.entries == ledger.size == 4 and report.checkpoints == 1
    result = CliRunner().invoke(app, ["ledger", "verify", url])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_verify_on_a_database_url_detects_an_altered_entry(tmp_path):
    url, engine, ledger, alice = _world(tmp_path)
    ledger.append([_order(ledger, alice, "o1", "n1")], checkpoint=True)
    with engine.begin() as conn:
        body = conn.execute(sa.text("SELECT body FROM ledger_entries WHERE seq = 2")).scalar()
        conn.execute(sa.text("UPDATE ledger_entries SET body = :b WHERE seq = 2"),
                     {"b": bytes(body).replace(b'"quantity_wh":1000', b'"quantity_wh":9000')})
    report = verify_ledger(url)
    assert not report.ok and report.bad_entry == 2
    result = CliRunner().invoke(app, ["ledger", "verify", url])
    assert result.exit_code == 1


def test_a_group_keeps_the_appends_the_rules_accept_and_commits_them_together(tmp_path):
    url, engine, ledger, alice = _world(tmp_path)
    with engine.begin() as conn, ledger.group(conn) as group:
        assert group.append([_order(ledger, alice, "o1", "n1")]).first_seq == 2
        with pytest.raises(Rejection, match="replayed nonce"):
            group.append([_order(ledger, alice, "o2", "n1")])
        assert group.append([_order(ledger, alice, "o3", "n3")]).first_seq == 3
    assert ledger.size == 4
    size = ledger.size
    with pytest.raises(RuntimeError):
        with engine.begin() as conn, ledger.group(conn) as group:
            group.append([_order(ledger, alice, "o4", "n4")])
            raise RuntimeError("crash before commit")
    assert ledger.size == size  # state rebuilt from the database: o4 is not there
    reopened = Ledger.open_sql(engine)
    assert (reopened.size, reopened.root()) == (ledger.size, ledger.root())
    assert [e["payload"]["order_id"] for e in reopened.entries("order")] == ["o1", "o3"]
    report = verify_ledger(url)
    assert report.ok and report.entries == 4
