"""``lemgrid simulate --ledger``: a simulated run on the verifiable ledger, anchored on the EVM.

One simulated day over two calendar days (two sessions) on a feeder whose PV overloads the
transformer, so that the DSO activates flexibility: the ledger verifies, every record kind is
covered by the tamper checks, and a participant's statement is proven by inclusion.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

pytest.importorskip("web3")
pytest.importorskip("vyper")
pytest.importorskip("eth_tester")

from lemgrid.cli import app  # noqa: E402
from lemgrid.errors import InputError  # noqa: E402
from lemgrid.ledger.db import LedgerDB  # noqa: E402
from lemgrid.ledger.merkle import leaf_hash  # noqa: E402
from lemgrid.ledger.proofs import check_proof  # noqa: E402
from lemgrid.ledger.simulation import (  # noqa: E402
    market_id_of,
    record_simulation,
    statement_proof,
    statement_seq,
)
from lemgrid.ledger.store import INDEX_TABLES, Ledger, default_witness_path  # noqa: E402
from lemgrid.ledger.verify import verify_ledger  # noqa: E402
from lemgrid.scenario import build_scenario, parse_scenario  # noqa: E402
from lemgrid.sim.runner import simulate  # noqa: E402

pytestmark = pytest.mark.slow

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06T12:00
days: 1
scale: {pv: 6.0}
assets:
  - {type: battery, every: 2, capacity_kwh: 10, power_kw: 5}
market: {design: uniform}
dso:
  flexibility: {clearing: optimal}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The CLI run: simulate with --ledger (in-process EVM), plus the same result in Python."""
    folder = tmp_path_factory.mktemp("sim")
    (folder / "s.yaml").write_text(SCENARIO)
    ledger = folder / "run.db"
    out = CliRunner().invoke(app, ["simulate", str(folder / "s.yaml"), "--out",
                                   str(folder / "out"), "--no-report", "--quiet",
                                   "--ledger", str(ledger)])
    assert out.exit_code == 0, out.output
    assert "2 checkpoints anchored on in-process EVM" in " ".join(out.output.split())
    return folder, ledger


@pytest.fixture(scope="module")
def result():
    return simulate(build_scenario(parse_scenario(SCENARIO)))


@pytest.fixture
def copy(run, tmp_path):
    _, ledger = run
    for source in (ledger, default_witness_path(ledger)):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path / ledger.name


def _sql(path, sql, args):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for table in ["meta", "entries", *INDEX_TABLES]:
        for action in ("update", "delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    conn.execute(sql, args)
    conn.execute("COMMIT")
    conn.close()


def test_the_simulated_ledger_verifies_and_holds_every_stage(run):
    _, ledger = run
    out = CliRunner().invoke(app, ["ledger", "verify", str(ledger)])
    assert out.exit_code == 0, out.output
    with Ledger.open(ledger) as log:
        kinds = {}
        for entry in log.entries():
            kinds[entry["payload"]["kind"]] = kinds.get(entry["payload"]["kind"], 0) + 1
        checkpoints = log.state.checkpoints
        labels = [log.entry(c.seq)["payload"]["label"] for c in checkpoints]
    assert {"key-registration", "order", "trade", "clearing", "settlement", "flex-activation",
            "meter-reading", "delivery-settlement", "statement", "checkpoint"} <= set(kinds)
    assert kinds["clearing"] == kinds["delivery-settlement"] == 96  # every interval
    assert kinds["statement"] == 2 * kinds["key-registration"]  # per participant and session
    assert kinds["meter-reading"] == 96 * kinds["key-registration"]
    assert len(checkpoints) == 2 and labels[0].endswith("2016-06-06")  # one per session
    assert labels[1].endswith("2016-06-07")


def test_orders_are_signed_by_each_participants_deterministic_key(run, result, tmp_path):
    _, ledger = run
    with Ledger.open(ledger) as log:
        keys = {e["payload"]["participant"]: e["payload"]["public_key"]
                for e in log.entries("key-registration")}
        owner = {kid: info.participant for kid, info in log.state.keys.items()}
        signed = [(e["payload"]["participant"], e["signer"]) for e in log.entries("order")]
    assert len(set(keys.values())) == len(keys) == len(result.participant_ids)
    assert signed and all(owner[signer] == participant for participant, signer in signed)
    # The same run gives the same keys.
    again = record_simulation(result, tmp_path / "again.db", anchor=False)
    with Ledger.open(again.path) as log:
        assert {e["payload"]["participant"]: e["payload"]["public_key"]
                for e in log.entries("key-registration")} == keys


def test_checkpoints_anchored_on_the_evm_verify_and_catch_a_rewrite(result, tmp_path):
    written = record_simulation(result, tmp_path / "a.db")
    assert written.sessions == 2 and written.anchored == written.checkpoints == 2
    report = verify_ledger(written.path, anchors=written.anchors)
    assert report.ok and report.anchored == 2
    # Rewrite the last statement and re-sign nothing: the chain's root no longer matches.
    seq = statement_seq(written.path, market_id_of(result, 48), str(result.participant_ids[0]))
    body = _body(written.path, seq).replace(b'"total_ueur":', b'"total_ueur":1')
    _sql(written.path, "UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
         (body, leaf_hash(body), seq))
    assert not verify_ledger(written.path, witness=None, anchors=written.anchors).ok


def _body(path, seq):
    conn = sqlite3.connect(path)
    body = conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    conn.close()
    return body


def test_tampering_with_any_kind_of_stored_record_is_detected(copy):
    original = copy.read_bytes()
    with Ledger.open(copy) as log:
        first = {}
        for entry in log.entries():
            first.setdefault(entry["payload"]["kind"], entry["seq"])
    assert len(first) >= 10
    for kind, seq in first.items():
        LedgerDB.remove(copy)
        copy.write_bytes(original)
        body = _body(copy, seq)
        doc = json.loads(body)
        numbers = [k for k, v in doc["payload"].items() if type(v) is int]
        texts = [k for k, v in doc["payload"].items() if type(v) is str and k != "kind"]
        if numbers:
            doc["payload"][numbers[0]] += 1
        else:
            doc["payload"][texts[0]] += "x"
        forged = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        _sql(copy, "UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
             (forged, leaf_hash(forged), seq))
        report = verify_ledger(copy)
        assert not report.ok, f"tampered {kind} at {seq} went unnoticed"
        assert report.bad_entry == seq, (kind, report.problem)
        out = CliRunner().invoke(app, ["ledger", "verify", str(copy)])
        assert out.exit_code == 1, (kind, out.output)


def test_a_participants_statement_is_proven_by_inclusion(run, result, tmp_path):
    _, ledger = run
    participant = str(result.participant_ids[3])
    market = market_id_of(result, 0)
    proof = statement_proof(ledger, market, participant)
    with Ledger.open(ledger) as log:
        log_key = log.operator_public_key_hex
    statement = proof["entry"]["payload"]
    assert statement["participant"] == participant and statement["market_id"] == market
    # The bill in the statement is the simulation's bill of that session (µ€, rounded parts).
    bill_ueur = round(float(result.participant_series["cost_eur"][:48, 3].sum()) * 1e6)
    assert abs(statement["total_ueur"] - bill_ueur) <= 7
    path = tmp_path / "p.json"
    path.write_text(json.dumps(proof))
    out = CliRunner().invoke(app, ["ledger", "check-proof", str(path), "--log-key", log_key])
    assert out.exit_code == 0, out.output
    from lemgrid.ledger.identity import public_key_from_hex

    assert check_proof(proof, public_key_from_hex(log_key)).ok
    # A proof of a changed bill fails.
    proof["entry"]["payload"]["total_ueur"] -= 1
    path.write_text(json.dumps(proof))
    out = CliRunner().invoke(app, ["ledger", "check-proof", str(path), "--log-key", log_key])
    assert out.exit_code == 1
    with pytest.raises(InputError, match="no statement"):
        statement_proof(ledger, market, "nobody")


def test_cli_refuses_an_existing_ledger_and_rpc_without_ledger(run, tmp_path):
    folder, ledger = run
    out = CliRunner().invoke(app, ["simulate", str(folder / "s.yaml"), "--ledger", str(ledger)])
    assert out.exit_code == 2 and "--ledger" in out.output and "already exists" in out.output
    out = CliRunner().invoke(app, ["simulate", str(folder / "s.yaml"), "--chain-rpc",
                                   "http://127.0.0.1:1"])
    assert out.exit_code == 2 and "--chain-rpc needs --ledger" in out.output


def test_the_dsos_simulated_activations_reach_their_devices(run):
    from lemgrid.ledger.activation import ActivationRefused, DeviceGuard, activation_proof
    from lemgrid.ledger.identity import public_key_from_hex

    _, ledger = run
    with Ledger.open(ledger) as log:
        activations = [e["payload"] for e in log.entries("flex-activation")]
        log_id, log_key = log.log_id, public_key_from_hex(log.operator_public_key_hex)
    assert activations
    first = activations[0]
    guard = DeviceGuard(first["device"], log_id, log_key)
    accepted = guard.accept(activation_proof(ledger, first["activation_id"]))
    assert (accepted.direction, accepted.power_w) == (first["direction"], first["power_w"])
    with pytest.raises(ActivationRefused):
        guard.accept(activation_proof(ledger, first["activation_id"]))


BIDDING = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
scale: {pv: 2.0}
agents: {default: zi-c}
forecast: {method: noisy, error: 0.2}
market: {design: pay-as-bid, intraday: true}
"""


@pytest.fixture(scope="module")
def bidding(tmp_path_factory):
    """Zero-intelligence agents (random limit prices) in a pay-as-bid auction on noisy forecasts,
    their deviations traded intraday: the ledger of the run and the run."""
    result = simulate(build_scenario(parse_scenario(BIDDING)))
    written = record_simulation(result, tmp_path_factory.mktemp("bids") / "bids.db",
                                anchor=False)
    return result, written.path


def test_the_ledger_holds_the_agents_real_bids_and_trades(bidding):
    result, ledger = bidding
    assert verify_ledger(ledger).ok
    orders, trades = result.tables["orders"], result.tables["trades"]
    market = market_id_of(result, 0)
    with Ledger.open(ledger) as log:
        recorded = [e["payload"] for e in log.entries("order")]
        recorded_trades = [e["payload"] for e in log.entries("trade")]
    t_of = {stamp: t for t, stamp in enumerate(result.time_index)}
    expected = {
        (market if row.session == "day-ahead" else f"{market}/intraday", t_of[row.interval],
         f"{t_of[row.interval]}/{row.side}/{row.participant}"):
            (int(row.quantity_kwh * 1000), round(row.price_eur_per_kwh * 1000))
        for row in orders.itertuples() if int(row.quantity_kwh * 1000) > 0}
    got = {(o["market_id"], o["interval"], o["order_id"]): (o["quantity_wh"],
                                                           o["price_meur_per_kwh"])
           for o in recorded}
    # Every bid, filled or not, with its own quantity and limit price (not the clearing price).
    assert got == expected
    assert (orders.filled_kwh < orders.quantity_kwh - 1e-3).any()  # some bids did not fill
    assert len({o["price_meur_per_kwh"] for o in recorded}) > 50  # ZI-C limits are random
    assert {o["market_id"] for o in recorded} == {market, f"{market}/intraday"}
    # Every recorded trade is within the limits of the two orders it fills.
    limit = {(o["market_id"], o["order_id"]): o["price_meur_per_kwh"] for o in recorded}
    for trade in recorded_trades:
        buy = limit[(trade["market_id"], trade["buy_order_id"])]
        sell = limit[(trade["market_id"], trade["sell_order_id"])]
        assert sell - 1 <= trade["price_meur_per_kwh"] <= buy + 1
    # The traded energy is the clearing's, to a Wh per trade (whole Wh, rounded down).
    assert len(recorded_trades) == int((trades.quantity_kwh >= 1e-3).sum())
    total_wh = sum(t["quantity_wh"] for t in recorded_trades)
    assert 0 <= trades.quantity_kwh.sum() * 1000 - total_wh <= len(trades)


def test_designs_without_orders_record_their_positions(tmp_path):
    community = simulate(build_scenario(parse_scenario(
        SCENARIO.replace("design: uniform", "design: community"))))
    assert "orders" not in community.tables
    written = record_simulation(community, tmp_path / "c.db", anchor=False)
    assert verify_ledger(written.path).ok
    with Ledger.open(written.path) as log:
        bought = sum(e["payload"]["quantity_wh"] for e in log.entries("order")
                     if e["payload"]["side"] == "buy")
    assert abs(bought - community.local_bought_kwh.sum() * 1000) <= community.local_bought_kwh.size


def test_a_run_that_fails_part_way_leaves_nothing_behind(result, tmp_path, monkeypatch):
    import lemgrid.ledger.simulation as simulation

    real = simulation.session_records
    sessions = []

    def second_fails(*args, **kwargs):
        sessions.append(1)
        if len(sessions) == 2:
            raise RuntimeError("the machine went down in the second session")
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "session_records", second_fails)
    path = tmp_path / "run.db"
    with pytest.raises(RuntimeError, match="second session"):
        record_simulation(result, path, anchor=False)
    assert sorted(tmp_path.iterdir()) == []  # no ledger, witness, keystore or journal
    monkeypatch.setattr(simulation, "session_records", real)
    again = record_simulation(result, path, anchor=False)  # the path is free again
    assert again.sessions == 2 and verify_ledger(path).ok
