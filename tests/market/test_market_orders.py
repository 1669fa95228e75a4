"""Order records, batches and their validation: every error names the row, field and value."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from lemgrid.errors import InputError
from lemgrid.market import BUY, SELL, Order, OrderBatch, read_orders_csv

GOOD = pd.DataFrame({
    "order_id": ["a1", "a2", "a3"],
    "participant": ["alice", "bob", "carol"],
    "side": ["buy", "sell", "Buy"],
    "quantity_kwh": [1.5, 2.0, 0.5],
    "price_eur_per_kwh": [0.25, 0.18, -0.01],
})


def frame(**changes) -> pd.DataFrame:
    out = GOOD.copy().astype(object)
    for column, (row, value) in changes.items():
        out.loc[row, column] = value
    return out


def test_batch_from_frame_with_defaults():
    batch = OrderBatch.from_frame(GOOD)
    assert len(batch) == 3
    assert batch.side.tolist() == [BUY, SELL, BUY]
    assert batch.interval.tolist() == [0, 0, 0]
    assert batch.product.tolist() == [0, 0, 0]
    assert batch.timestamp_s.tolist() == [0.0, 1.0, 2.0]  # row order is arrival order
    assert np.all(np.isinf(batch.valid_until_s))
    assert batch.bus is None
    back = batch.to_frame()
    assert back["side"].tolist() == ["buy", "sell", "buy"]


@pytest.mark.parametrize("changes, message", [
    ({"side": (1, "hold")}, "orders.csv row 2: side must be 'buy' or 'sell', got 'hold'"),
    ({"price_eur_per_kwh": (2, np.nan)}, "orders.csv row 3: price_eur_per_kwh is missing"),
    ({"price_eur_per_kwh": (0, "abc")},
     "orders.csv row 1: price_eur_per_kwh must be a number, got 'abc'"),
    ({"quantity_kwh": (1, 0.0)},
     "orders.csv row 2: quantity_kwh must be a finite number > 0, got 0.0"),
    ({"quantity_kwh": (2, -3.0)}, "row 3: quantity_kwh must be a finite number > 0, got -3.0"),
    ({"quantity_kwh": (0, np.inf)}, "row 1: quantity_kwh must be a finite number > 0, got inf"),
    ({"price_eur_per_kwh": (1, 50.0)},
     "orders.csv row 2: price_eur_per_kwh must be within [-10, 10] EUR/kWh, got 50.0"),
    ({"order_id": (2, "a1")}, "orders.csv row 3: duplicate order_id 'a1' (first used in row 1)"),
    ({"participant": (1, None)}, "orders.csv row 2: participant is missing"),
    ({"order_id": (0, None)}, "orders.csv row 1: order_id is missing"),
])
def test_bad_values_name_row_field_and_value(changes, message):
    with pytest.raises(InputError) as err:
        OrderBatch.from_frame(frame(**changes), source="orders.csv")
    assert message in str(err.value)


def test_missing_and_unknown_columns():
    with pytest.raises(InputError, match=r"orders.csv: missing column 'side' \(found: order_id"):
        OrderBatch.from_frame(GOOD.drop(columns="side"), source="orders.csv")
    with pytest.raises(InputError, match="unknown column 'colour'"):
        OrderBatch.from_frame(GOOD.assign(colour="red"), source="orders.csv")


def test_optional_columns_interval_product_bus_and_times():
    f = GOOD.assign(interval=[3, 3, 4], product=["energy", "flex-up", None], bus=["7", "7", "9"],
                    timestamp=["2025-01-01T00:00:02Z", "2025-01-01T00:00:01Z",
                               "2025-01-01T00:00:00Z"],
                    valid_until=["2025-01-01T00:15:00Z", None, None])
    batch = OrderBatch.from_frame(f)
    assert batch.interval.tolist() == [3, 3, 4]
    assert batch.product.tolist() == [0, 1, 0]
    assert batch.bus.tolist() == ["7", "7", "9"]
    start = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
    assert batch.timestamp_s.tolist() == [start + 2, start + 1, start]
    assert batch.valid_until_s[0] == start + 900 and np.isinf(batch.valid_until_s[1])
    assert not batch.arrival_is_row_order
    assert batch.market_key.tolist() == [9, 10, 12]


@pytest.mark.parametrize("column, value, message", [
    ("interval", [0, 1.5, 2], "row 2: interval must be an integer, got 1.5"),
    ("product", ["energy", "heat", "energy"], "row 2: product must be 'energy' or 'flex-up' or "
                                              "'flex-down', got 'heat'"),
    ("timestamp", ["1", "yesterday", "3"], "row 2: timestamp must be seconds or an ISO 8601 "
                                           "date-time, got 'yesterday'"),
    ("valid_until", [5.0, 0.5, 9.0], "row 2: valid_until must not be before timestamp, got 0.5"),
])
def test_bad_optional_columns(column, value, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OrderBatch.from_frame(GOOD.assign(**{column: value}))


def test_configurable_price_band():
    with pytest.raises(InputError, match=r"within \[0, 1\] EUR/kWh, got -0.01"):
        OrderBatch.from_frame(GOOD, price_band_eur_per_kwh=(0.0, 1.0))
    with pytest.raises(InputError, match="lower <= upper"):
        OrderBatch.from_frame(GOOD, price_band_eur_per_kwh=(1.0, 0.0))


def test_several_bad_rows_are_counted():
    f = GOOD.assign(quantity_kwh=[-1.0, -2.0, -3.0])
    with pytest.raises(InputError, match=r"row 1: .* got -1.0 \(2 more rows like this\)"):
        OrderBatch.from_frame(f)


def test_order_record_and_batch_from_records():
    order = Order(order_id="x", participant="alice", side="sell", quantity_kwh=2,
                  price_eur_per_kwh=0.1, interval=5, bus=12,
                  timestamp=datetime(2025, 6, 1, 12, 0))  # naive = UTC
    batch = OrderBatch.from_orders([order, {"order_id": 7, "participant": "bob", "side": "buy",
                                            "quantity_kwh": 1, "price_eur_per_kwh": 0.3}])
    assert batch.order_id.tolist() == ["x", 7]
    assert batch.side.tolist() == [SELL, BUY]
    assert batch.timestamp_s[0] == datetime(2025, 6, 1, 12, tzinfo=timezone.utc).timestamp()
    assert batch.timestamp_s[1] == 1.0  # position in the submission
    assert batch.bus.tolist() == [12, None]


@pytest.mark.parametrize("record, message", [
    ({"quantity_kwh": -1}, "orders row 1: quantity_kwh: Input should be greater than 0, got -1"),
    ({"side": "bid"}, "orders row 1: side: Input should be 'buy' or 'sell', got 'bid'"),
    ({"price_eur_per_kwh": float("nan")}, "orders row 1: price_eur_per_kwh: Input should be a "
                                          "finite number, got nan"),
    ({"colour": "red"}, "orders row 1: colour: Extra inputs are not permitted"),
    # Accepted on main (issue 10, item 21): booleans and text as numbers, huge quantities.
    ({"quantity_kwh": True}, "quantity_kwh: Input should be a valid number, got True"),
    ({"price_eur_per_kwh": "0.2"}, "price_eur_per_kwh: Input should be a valid number, got '0.2'"),
    ({"interval": True}, "interval: Input should be a valid integer, got True"),
    ({"interval": -1}, "interval: Input should be greater than or equal to 0, got -1"),
    ({"quantity_kwh": 1e308}, "quantity_kwh: Input should be less than or equal to 1000000"),
])
def test_bad_records(record, message):
    base = {"order_id": "x", "participant": "p", "side": "buy", "quantity_kwh": 1.0,
            "price_eur_per_kwh": 0.2}
    with pytest.raises(InputError) as err:
        OrderBatch.from_orders([{**base, **record}])
    assert message in str(err.value)


def test_from_arrays_broadcasts_scalars_and_checks_lengths():
    batch = OrderBatch.from_arrays(order_id=[1, 2], participant="p", side=[BUY, SELL],
                                   quantity_kwh=[1.0, 2.0], price_eur_per_kwh=0.2, interval=4)
    assert batch.participant.tolist() == ["p", "p"] and batch.interval.tolist() == [4, 4]
    with pytest.raises(InputError, match=r"every field needs 2 values, got shape \(3,\)"):
        OrderBatch.from_arrays(order_id=[1, 2, 3], participant="p", side=BUY,
                               quantity_kwh=[1.0, 2.0], price_eur_per_kwh=0.2)
    with pytest.raises(InputError, match="side must be"):
        OrderBatch.from_arrays(order_id=[1], participant="p", side=[0], quantity_kwh=[1.0],
                               price_eur_per_kwh=0.2)


def test_read_orders_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id, participant, side, quantity_kwh, price_eur_per_kwh\n"
                    "007,alice,buy,1,0.3\n008,bob,sell,1,0.1\n")
    batch = read_orders_csv(path)
    assert batch.order_id.tolist() == ["007", "008"]  # ids stay text
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.csv: the file is empty"):
        read_orders_csv(empty)
    header = tmp_path / "header.csv"
    header.write_text("order_id,participant,side,quantity_kwh,price_eur_per_kwh\n")
    with pytest.raises(InputError, match="header.csv: contains no orders"):
        read_orders_csv(header)


# --- sane bounds (issue 10, item 21) ----------------------------------------------------------

@pytest.mark.parametrize("interval, message", [
    ("1e30", "row 1: interval must be within 0 .. 9007199254740991, got 1e+30"),
    ("99999999999999999999", "row 1: interval must be within 0 .. 9007199254740991"),
    ("9223372036854775807", "row 1: interval must be within 0 .. 9007199254740991"),
    ("3074457345618258603", "row 1: interval must be within 0 .. 9007199254740991"),
    ("-1", "row 1: interval must be within 0 .. 9007199254740991, got -1"),
])
def test_huge_or_negative_csv_interval_is_an_input_error(tmp_path, interval, message):
    # On main 1e30 raised numpy's "'minlength' must not be negative"; 2**63 / 3 overflowed the
    # market key silently.
    path = tmp_path / "orders.csv"
    path.write_text("order_id,participant,side,quantity_kwh,price_eur_per_kwh,interval\n"
                    f"1,a,buy,1,0.2,{interval}\n2,b,sell,1,0.1,0\n")
    with pytest.raises(InputError) as err:
        read_orders_csv(path)
    assert message in str(err.value)


def test_largest_interval_clears(tmp_path):
    from lemgrid.market import clear
    from lemgrid.market.orders import MAX_INTERVAL

    batch = OrderBatch.from_frame(GOOD.assign(interval=MAX_INTERVAL))
    result = clear(batch, "uniform")
    assert result.summary()["markets"][0]["interval"] == MAX_INTERVAL


def test_quantity_beyond_a_gigawatt_hour_is_refused():
    # On main two orders of 1e308 kWh cleared to 0 kWh (their sums overflow to inf).
    with pytest.raises(InputError, match=r"row 2: quantity_kwh must be at most 1e\+06 kWh, "
                                         r"got 1e\+308"):
        OrderBatch.from_frame(GOOD.assign(quantity_kwh=[1.0, 1e308, 1.0]))
    batch = OrderBatch.from_frame(GOOD.assign(quantity_kwh=[1e6, 1e6, 1.0]))  # the bound itself
    assert batch.quantity_kwh.max() == 1e6


def test_boolean_columns_are_not_numbers(tmp_path):
    # On main a column of True/False was read as 1/0 kWh (pandas parses it as booleans).
    path = tmp_path / "orders.csv"
    path.write_text("order_id,participant,side,quantity_kwh,price_eur_per_kwh\n"
                    "1,a,buy,True,0.2\n2,b,sell,False,0.1\n")
    with pytest.raises(InputError, match="row 1: quantity_kwh must be a number, got True"):
        read_orders_csv(path)
    path.write_text("order_id,participant,side,quantity_kwh,price_eur_per_kwh\n"
                    "1,a,buy,1,True\n2,b,sell,1,\n")  # booleans mixed with a missing value
    with pytest.raises(InputError, match="row 1: price_eur_per_kwh must be a number, got True"):
        read_orders_csv(path)
    with pytest.raises(InputError, match="quantity_kwh must be numbers, got booleans"):
        OrderBatch.from_arrays(order_id=[1, 2], participant="p", side=["buy", "sell"],
                               quantity_kwh=np.array([True, True]), price_eur_per_kwh=0.1)


@pytest.mark.parametrize("band", [(-1e308, 1e308), (-np.inf, 1.0), (np.nan, 1.0)])
def test_price_band_beyond_the_limit_is_refused(band):
    with pytest.raises(InputError, match=r"within \+-1000 EUR/kWh"):
        OrderBatch.from_frame(GOOD, price_band_eur_per_kwh=band)
