"""The chain code against a real JSON-RPC node on loopback: Hardhat's node (npm), installed by
``scripts/ensure-test-services.sh`` and started by :func:`lemgrid.ledger.evmnode.evm_node`."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

pytest.importorskip("web3")
pytest.importorskip("vyper")

from lemgrid.cli import app  # noqa: E402
from lemgrid.ledger import chain, evm_market  # noqa: E402
from lemgrid.ledger.evmnode import evm_node  # noqa: E402
from lemgrid.ledger.integration import record_clearing  # noqa: E402
from lemgrid.ledger.store import INDEX_TABLES, default_witness_path, log_id_of  # noqa: E402

from .test_ledger_integration import ORDERS, TRADES  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node():
    with evm_node() as url:
        yield url


def test_anchor_and_verify_on_the_node(node, tmp_path):
    path = tmp_path / "l.db"
    record_clearing(path, ORDERS, TRADES, "m1", timestamp_ms=1)
    runner = CliRunner()
    out = runner.invoke(app, ["ledger", "anchor", str(path), "--rpc", node])
    assert out.exit_code == 0, out.output
    w3 = chain.connect(node)
    assert w3.eth.chain_id == 31337  # Hardhat's node, not the in-process EVM
    assert chain.load_anchor_record(path)["chain_id"] == 31337
    out = runner.invoke(app, ["ledger", "verify", str(path), "--rpc", node])
    assert out.exit_code == 0, out.output
    # A second clearing, anchored incrementally on the same contract.
    again = [{**o, "order_id": o["order_id"] + "x", "interval": 1} for o in ORDERS]
    trades = [{**t, "buy_order_id": t["buy_order_id"] + "x",
               "sell_order_id": t["sell_order_id"] + "x", "interval": 1} for t in TRADES]
    record_clearing(path, again, trades, "m2", timestamp_ms=2)
    assert runner.invoke(app, ["ledger", "anchor", str(path), "--rpc", node]).exit_code == 0
    record = chain.load_anchor_record(path)
    anchors = chain.read_anchors(chain.at(w3, "anchor", record["contract"]), log_id_of(path))
    assert len(anchors) == 2
    # The operator rewrites the log and drops the witness file: the node's anchors catch it.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for table in ["meta", "entries", *INDEX_TABLES]:
        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    last = conn.execute("SELECT max(seq) FROM entries").fetchone()[0]
    conn.execute("DELETE FROM entries WHERE seq = ?", (last,))
    conn.execute("COMMIT")
    conn.close()
    default_witness_path(path).unlink()
    out = runner.invoke(app, ["ledger", "verify", str(path), "--rpc", node])
    assert out.exit_code == 1 and "truncated" in out.output, out.output


def test_on_chain_clearing_on_the_node_equals_the_in_process_evm(node):
    book = evm_market.reference_book(60, seed=3)
    results = []
    for w3 in (chain.connect(node), chain.connect()):
        contract = evm_market.deploy_auction(w3, evm_market.bound_for(len(book)))
        results.append(evm_market.clear_on_chain(contract, b"\x01" * 32, book))
    on_node, in_process = results
    assert (on_node.volume_wh, on_node.lower_meur_per_kwh, on_node.upper_meur_per_kwh,
            on_node.fills_wh) == (in_process.volume_wh, in_process.lower_meur_per_kwh,
                                  in_process.upper_meur_per_kwh, in_process.fills_wh)
    assert on_node.volume_wh > 0


def test_simulate_with_ledger_anchors_every_session_on_the_node(node, tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("grid: simbench:1-LV-rural1--0-sw\nstart: 2016-06-06T18:00\ndays: 0.5\n"
                        "market: {design: uniform}\n")
    ledger = tmp_path / "run.db"
    runner = CliRunner()
    out = runner.invoke(app, ["simulate", str(scenario), "--out", str(tmp_path / "out"),
                              "--no-report", "--quiet", "--ledger", str(ledger),
                              "--chain-rpc", node])
    assert out.exit_code == 0, out.output
    assert f"2 checkpoints anchored on {node}" in " ".join(out.output.split())
    record = chain.load_anchor_record(ledger)
    anchors = chain.read_anchors(chain.at(chain.connect(node), "anchor", record["contract"]),
                                 log_id_of(ledger))
    assert len(anchors) == 2
    out = runner.invoke(app, ["ledger", "verify", str(ledger), "--rpc", node])
    assert out.exit_code == 0, out.output
