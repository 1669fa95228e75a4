"""record_clearing: a market clearing (plain dict records) lands in the ledger, verifiably."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lemgrid.errors import InputError
from lemgrid.ledger.identity import Keystore, generate_key, registration_payload, sign_record
from lemgrid.ledger.integration import default_keystore_path, record_clearing
from lemgrid.ledger.proofs import check_proof
from lemgrid.ledger.records import order_payload
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import verify_ledger

ORDERS = [
    {"order_id": "b1", "participant": "alice", "side": "buy", "quantity_kwh": 2.0,
     "price_eur_per_kwh": 0.30, "interval": 0, "bus": "bus-4"},
    {"order_id": "s1", "participant": "bob", "side": "sell", "quantity_kwh": 1.5,
     "price_eur_per_kwh": 0.10, "interval": 0},
    {"order_id": "s2", "participant": "carol", "side": "sell", "quantity_kwh": 1.0,
     "price_eur_per_kwh": 0.2, "interval": 0},
]
TRADES = [
    {"buy_order_id": "b1", "sell_order_id": "s1", "quantity_kwh": 1.5, "price_eur_per_kwh": 0.2,
     "interval": 0},
    {"buy_order_id": "b1", "sell_order_id": "s2", "quantity_kwh": 0.5, "price_eur_per_kwh": 0.2,
     "interval": 0},
]


def test_records_orders_trades_clearing_settlement_and_a_checkpoint(tmp_path):
    path = tmp_path / "l.db"
    summary = record_clearing(path, ORDERS, TRADES, "da-1", timestamp_ms=5)
    assert (summary.keys_registered, summary.capabilities, summary.orders, summary.trades,
            summary.clearings, summary.settlements) == (3, 2, 3, 2, 1, 1)
    assert summary.first_seq == 1 and summary.size == 14 and summary.checkpoint_seq == 13
    report = verify_ledger(path)
    assert report.ok and report.witnessed == 1
    with Ledger.open(path) as ledger:
        entries = list(ledger.entries())
        assert entries[-1]["payload"]["root_hash"] == summary.root_hex
        trade = next(e for e in entries if e["payload"]["kind"] == "trade")
        assert trade["payload"] | {"kind": "trade"} == {
            "kind": "trade", "market_id": "da-1", "interval": 0, "trade_id": "0/0",
            "buyer": "alice", "seller": "bob", "buy_order_id": "b1", "sell_order_id": "s1",
            "quantity_wh": 1500, "price_meur_per_kwh": 200}
        settlement = next(e for e in entries if e["payload"]["kind"] == "settlement")["payload"]
        # alice pays 2 kWh x 0.20 EUR = 0.40 EUR; bob gets 0.30, carol 0.10 (in micro-euro)
        assert settlement["postings"] == [{"account": "alice", "amount_ueur": -400_000},
                                          {"account": "bob", "amount_ueur": 300_000},
                                          {"account": "carol", "amount_ueur": 100_000}]
        clearing = next(e for e in entries if e["payload"]["kind"] == "clearing")["payload"]
        assert (clearing["volume_wh"], clearing["price_meur_per_kwh"]) == (2000, 200)
        assert ledger.state.meters["alice"] == "bus-4"
        assert check_proof(ledger.inclusion_proof(trade["seq"])).ok


def test_recording_the_same_clearing_twice_is_refused_and_writes_nothing(tmp_path):
    path = tmp_path / "l.db"
    record_clearing(path, ORDERS, TRADES, "da-1")
    size = verify_ledger(path).entries
    with pytest.raises(InputError, match="replayed nonce 'da-1/b1'"):
        record_clearing(path, ORDERS, TRADES, "da-1")
    assert verify_ledger(path).entries == size


def test_energy_sold_in_one_market_cannot_be_sold_again_in_another(tmp_path):
    path = tmp_path / "l.db"
    record_clearing(path, ORDERS, TRADES, "da-1")
    again = [{**o, "order_id": o["order_id"] + "'"} for o in ORDERS]
    trades = [{**t, "buy_order_id": "b1'", "sell_order_id": "s1'"} for t in TRADES[:1]]
    with pytest.raises(InputError, match="double spend: 'bob' offers 1500 Wh"):
        record_clearing(path, again, trades, "intraday-1")
    # carol sold only 0.5 of her 1.0 kWh: she may sell the rest
    rest = [{**ORDERS[0], "order_id": "b9"}, {**ORDERS[2], "order_id": "s9", "quantity_kwh": 0.5}]
    summary = record_clearing(path, rest, [{**TRADES[1], "buy_order_id": "b9",
                                            "sell_order_id": "s9"}], "intraday-1")
    assert summary.capabilities == 0 and verify_ledger(path).ok


def test_numpy_scalars_rounding_and_bad_rows(tmp_path):
    orders = [{**o, "quantity_kwh": np.float64(o["quantity_kwh"]), "interval": np.int64(3)}
              for o in ORDERS]
    trades = [{**t, "quantity_kwh": 1.4999, "interval": np.int64(3)} for t in TRADES[:1]]
    summary = record_clearing(tmp_path / "a.db", orders, trades, "m")
    assert summary.trades == 1 and summary.dropped_wh == pytest.approx(0.9, abs=1e-6)
    with Ledger.open(tmp_path / "a.db") as ledger:
        assert ledger.state.spending.trades[("m", "3/0")]["quantity_wh"] == 1499
    cases = [
        ([{**ORDERS[0], "side": "hold"}], [], "order 0 ('b1'): side must be 'buy' or 'sell'"),
        ([{**ORDERS[0], "quantity_kwh": "abc"}], [], "order 0 ('b1'): quantity_kwh must be"),
        ([{**ORDERS[0], "quantity_kwh": 0.0001}], [], "at least 0.0005 kWh"),
        ([ORDERS[0], ORDERS[0]], [], "duplicate order_id"),
        (ORDERS, [{**TRADES[0], "sell_order_id": "zz"}], "sell_order_id 'zz' is not among"),
        (ORDERS, [{**TRADES[0], "sell_order_id": "b1"}], "sell_order_id 'b1' is a buy order"),
        (ORDERS, [TRADES[0], {**TRADES[1], "quantity_kwh": 0.6}],
         "ledger refused trade '0/1': order 'b1' would be filled 2100 Wh"),
        (ORDERS, [{**TRADES[0], "quantity_kwh": 1.6}],
         "ledger refused trade '0/0': double spend"),
    ]
    for n, (o, t, match) in enumerate(cases):
        with pytest.raises(InputError, match=re.escape(match)):
            record_clearing(tmp_path / f"bad{n}.db", o, t, "m")
        assert not (tmp_path / f"bad{n}.db").exists()  # nothing left behind


def test_orders_signed_by_the_participants_themselves(tmp_path):
    path = tmp_path / "l.db"
    keys = Keystore(operator=generate_key())
    alice = generate_key()
    with Ledger.create(path, keys.operator) as ledger:
        log_id = ledger.log_id
        ledger.append([sign_record(keys.operator, registration_payload(alice, "alice", "bus-4",
                                                                       log_id))])
    payload = order_payload(log_id=log_id, market_id="m", interval=0, order_id="b1",
                            participant="alice", meter="bus-4", side="buy", quantity_wh=2000,
                            price_meur_per_kwh=300, nonce="alice-1")
    signed = sign_record(alice, payload)
    row = {**ORDERS[0], "signature": signed.sig, "key_id": signed.signer, "nonce": "alice-1"}
    summary = record_clearing(path, [row, *ORDERS[1:]], TRADES, "m", keys=keys)
    assert summary.keys_registered == 2  # bob and carol got demo keys, alice kept hers
    assert verify_ledger(path).ok
    forged = {**row, "order_id": "b2", "nonce": "alice-2"}  # signature is over another order
    with pytest.raises(InputError, match="does not verify"):
        record_clearing(path, [forged], [], "m2", keys=keys)
    with pytest.raises(InputError, match="registered with key .* not in the keystore"):
        record_clearing(path, [{**ORDERS[0], "order_id": "b3"}], [], "m3", keys=keys)


def test_keystore_is_required_for_an_existing_ledger(tmp_path):
    path = tmp_path / "l.db"
    record_clearing(path, ORDERS, TRADES, "m")
    default_keystore_path(path).unlink()
    with pytest.raises(InputError, match="keystore .* does not"):
        record_clearing(path, ORDERS, TRADES, "m2")


def test_rows_straight_from_pandas_with_missing_values(tmp_path):
    pd = pytest.importorskip("pandas")
    orders = pd.DataFrame(ORDERS[:2]).astype({"interval": "Int64", "bus": "string"})
    orders.loc[0, "interval"] = pd.NA  # a missing interval defaults to 0
    orders.loc[1, "bus"] = pd.NA       # a missing bus defaults to the participant id
    trades = pd.DataFrame(TRADES[:1]).drop(columns="interval")
    summary = record_clearing(tmp_path / "l.db", orders.to_dict("records"),
                              trades.to_dict("records"), "m")
    assert summary.trades == 1
    with Ledger.open(tmp_path / "l.db") as ledger:
        assert ledger.state.meters == {"alice": "bus-4", "bob": "bob"}
        assert ledger.state.spending.trades[("m", "0/0")]["interval"] == 0


@pytest.mark.parametrize("mechanism", ["uniform", "pay-as-bid", "continuous"])
def test_records_what_the_market_layer_clears(tmp_path, mechanism):
    """End to end with lemgrid.market's own clearing output, as `lemgrid clear --ledger` does."""
    pd = pytest.importorskip("pandas")
    market = pytest.importorskip("lemgrid.market")
    from lemgrid.market.orders import OrderBatch

    rng = np.random.default_rng(7)
    n = 120
    book = OrderBatch.from_frame(pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n)], "participant": [f"p{i % 25}" for i in range(n)],
        "side": rng.choice(["buy", "sell"], n), "quantity_kwh": rng.uniform(0.1, 3, n).round(3),
        "price_eur_per_kwh": rng.uniform(0.05, 0.4, n).round(3),
        "interval": rng.integers(0, 3, n)}))
    result = market.clear(book, mechanism)
    trades = result.trades_frame()
    summary = record_clearing(tmp_path / "l.db", book.to_frame().to_dict("records"),
                              trades.to_dict("records"), mechanism)
    assert summary.orders == n and summary.trades == len(trades) > 0
    assert summary.dropped_wh < len(trades)  # < 1 Wh per trade
    assert verify_ledger(tmp_path / "l.db").ok
    with Ledger.open(tmp_path / "l.db") as ledger:
        volume_wh = sum(v for _, v in ledger.state.spending.interval_trades.values())
    assert volume_wh == pytest.approx(trades["quantity_kwh"].sum() * 1000, abs=len(trades))


def _second_clearing():
    orders = [{**o, "order_id": o["order_id"] + "x", "interval": 1} for o in ORDERS]
    trades = [{**t, "buy_order_id": t["buy_order_id"] + "x",
               "sell_order_id": t["sell_order_id"] + "x", "interval": 1} for t in TRADES]
    return orders, trades


def test_a_clearing_and_its_checkpoint_are_one_transaction(tmp_path):
    """A refused checkpoint used to leave the clearing recorded (and its re-run refused as a
    replay); now the clearing is recorded with its checkpoint or not at all."""
    path = tmp_path / "l.db"
    record_clearing(path, ORDERS, TRADES, "m1", timestamp_ms=2_000)
    size = verify_ledger(path).entries
    orders, trades = _second_clearing()
    with pytest.raises(InputError, match="ledger refused its checkpoint: .* goes back in time"):
        record_clearing(path, orders, trades, "m2", timestamp_ms=1_000)
    assert verify_ledger(path).entries == size
    summary = record_clearing(path, orders, trades, "m2", timestamp_ms=3_000)
    assert summary.first_seq == size and summary.checkpoint_seq == summary.size - 1
    assert verify_ledger(path).ok


def test_no_checkpoint_ahead_of_the_clock_and_a_fast_clock_blocks_nothing(tmp_path, monkeypatch):
    from lemgrid.ledger import store

    path = tmp_path / "l.db"
    now_ms = store._now_ms()
    with pytest.raises(InputError, match="ledger refused its checkpoint: .* ahead of the clock"):
        record_clearing(path, ORDERS, TRADES, "m1", timestamp_ms=now_ms + 3_600_000)
    assert not path.exists()  # nothing recorded: the new ledger is gone too
    # A machine whose clock ran an hour fast once: its checkpoint must not block later ones.
    fast_ms = now_ms + 3_600_000
    monkeypatch.setattr(store, "_now_ms", lambda: fast_ms)
    record_clearing(path, ORDERS, TRADES, "m1")
    monkeypatch.undo()
    orders, trades = _second_clearing()
    summary = record_clearing(path, orders, trades, "m2")
    with Ledger.open(path) as ledger:
        stamps = [c.timestamp_ms for c in ledger.state.checkpoints]
    assert stamps == [fast_ms, fast_ms]  # time never goes back, and never further ahead
    assert summary.checkpoint_seq == summary.size - 1 and verify_ledger(path).ok
