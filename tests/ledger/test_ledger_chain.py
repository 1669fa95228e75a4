"""Chain anchoring on the in-process EVM (extra ``[chain]``; skipped cleanly without it)."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

pytest.importorskip("web3")
pytest.importorskip("vyper")
pytest.importorskip("eth_tester")

from lemgrid.cli import app  # noqa: E402
from lemgrid.errors import InputError  # noqa: E402
from lemgrid.ledger import chain  # noqa: E402
from lemgrid.ledger.integration import record_clearing  # noqa: E402
from lemgrid.ledger.store import INDEX_TABLES, Ledger  # noqa: E402
from lemgrid.ledger.verify import verify_ledger  # noqa: E402

from .test_ledger_integration import ORDERS, TRADES  # noqa: E402


@pytest.fixture(scope="module")
def w3():
    return chain.connect()


@pytest.fixture
def two_clearings(tmp_path):
    path = tmp_path / "l.db"
    record_clearing(path, ORDERS, TRADES, "m1", timestamp_ms=1)
    again = [{**o, "order_id": o["order_id"] + "x", "interval": 1} for o in ORDERS]
    trades = [{**t, "buy_order_id": t["buy_order_id"] + "x",
               "sell_order_id": t["sell_order_id"] + "x", "interval": 1} for t in TRADES]
    record_clearing(path, again, trades, "m2", timestamp_ms=2)
    return path


def test_contract_compiles_from_source_with_the_expected_interface():
    compiled = chain.compile_contract("anchor")
    names = {item.get("name") for item in compiled.abi}
    assert {"anchor", "checkpoints", "count", "owner", "Anchored"} <= names
    assert compiled.bytecode.startswith("0x") and len(compiled.bytecode) > 100
    assert "# pragma version ~=0.4.0" in chain.contract_source("anchor")


def test_anchor_read_back_and_verify(w3, two_clearings):
    contract = chain.deploy(w3, "anchor")
    with Ledger.open(two_clearings) as ledger:
        done = chain.anchor_ledger(ledger, contract)
        assert [a.sequence for a in done] == [0, 1]
        assert [a.tree_size for a in done] == [c.tree_size for c in ledger.state.checkpoints]
        assert chain.anchor_ledger(ledger, contract) == []  # idempotent
        log_id = ledger.log_id
    anchors = chain.read_anchors(contract, log_id)
    assert [a.root_hex for a in anchors] == [a.root_hex for a in done]
    report = verify_ledger(two_clearings, witness=None, anchors=anchors)
    assert report.ok and report.anchored == 2
    # events carry the same data
    events = contract.events.Anchored().get_logs(from_block=0)
    assert [e["args"]["tree_size"] for e in events] == [a.tree_size for a in done]


def test_anchors_reveal_truncation_and_rewrites(w3, two_clearings):
    contract = chain.deploy(w3, "anchor")
    with Ledger.open(two_clearings) as ledger:
        chain.anchor_ledger(ledger, contract)
        log_id, last = ledger.log_id, ledger.state.checkpoints[-1]
    anchors = chain.read_anchors(contract, log_id)
    conn = sqlite3.connect(two_clearings, isolation_level=None)
    for table in ["entries", *INDEX_TABLES]:
        conn.execute(f"DROP TRIGGER {table}_no_delete")
        conn.execute(f"DELETE FROM {table} WHERE seq >= ?", (last.seq,))
    conn.close()
    report = verify_ledger(two_clearings, witness=None, anchors=anchors)
    assert not report.ok and report.bad_entry == last.seq and "log truncated" in report.problem


def test_contract_refuses_a_shrinking_tree_and_strangers(w3):
    contract = chain.deploy(w3, "anchor")
    owner, stranger = w3.eth.accounts[:2]
    log = b"\x01" * 32
    contract.functions.anchor(log, 10, b"\x02" * 32, b"\x03" * 32).transact({"from": owner})
    with pytest.raises(Exception, match="tree must grow"):
        contract.functions.anchor(log, 10, b"\x04" * 32, b"\x03" * 32).transact({"from": owner})
    with pytest.raises(Exception, match="only the operator anchors"):
        contract.functions.anchor(log, 11, b"\x04" * 32, b"\x03" * 32).transact(
            {"from": stranger})
    assert contract.functions.count(log).call() == 1
    assert tuple(contract.functions.checkpoints(log, 0).call()[:2]) == (10, b"\x02" * 32)


def test_cli_anchor_in_process_and_errors(two_clearings, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["ledger", "anchor", str(two_clearings)])
    assert result.exit_code == 0, result.output
    assert "OK: 2 anchors" in result.output and "in-process EVM" in result.output
    unreachable = runner.invoke(app, ["ledger", "anchor", str(two_clearings), "--rpc",
                                      "http://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and "cannot reach a JSON-RPC node" in unreachable.output
    no_contract = runner.invoke(app, ["ledger", "verify", str(two_clearings), "--rpc",
                                      "http://127.0.0.1:9"])
    assert no_contract.exit_code == 2 and "no anchor contract given" in no_contract.output
    with pytest.raises(InputError, match="no contract at"):
        chain.at(chain.connect(), "anchor", "0x" + "12" * 20)
