"""No double spending: capability bounds, no over-fill, single settlement, double entry."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lemgrid.errors import InputError
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.spending import settlement_postings
from lemgrid.ledger.verify import verify_ledger

from .conftest import CAPABILITY_WH, PARTICIPANTS, make_world


def _refused(world, payloads, match):
    size = world.ledger.size
    with pytest.raises(InputError, match=match):
        world.ledger.append_operator(payloads)
    assert world.ledger.size == size


def test_a_seller_cannot_sell_beyond_its_capability_across_markets(world):
    world.ledger.append_operator([world.trade("t1", "alice", "bob", 3000, market="day-ahead")])
    _refused(world, [world.trade("t2", "alice", "carol", 2001, market="intraday")],
             "double spend: trade 't2' sells 2001 Wh of 'alice' in interval 1 but only 2000 Wh")
    world.ledger.append_operator([world.trade("t2", "alice", "carol", 2000, market="intraday")])
    _refused(world, [world.trade("t3", "alice", "carol", 1, market="other")], "only 0 Wh")
    _refused(world, [world.trade("t4", "alice", "bob", 1, interval=2)], "no sellable energy")
    assert verify_ledger(world.path).ok


def test_sell_orders_are_bounded_by_what_is_left_to_sell(world):
    world.ledger.append([world.order("alice", "s1", quantity_wh=4000)])
    with pytest.raises(InputError, match="offers 5001 Wh in market 'm' interval 1 but only 5000"):
        world.ledger.append([world.order("alice", "s2", quantity_wh=1001)])
    # energy sold elsewhere reduces what can be offered here
    world.ledger.append_operator([world.trade("x1", "alice", "bob", 2000, market="other")])
    with pytest.raises(InputError, match="only 3000 Wh"):
        world.ledger.append([world.order("alice", "s3", quantity_wh=1)])
    world.ledger.append([world.order("bob", "b1", side="buy", quantity_wh=10**6)])  # buying is free


def test_orders_are_never_over_filled(world):
    world.ledger.append([world.order("alice", "s1", quantity_wh=1500),
                         world.order("bob", "b1", side="buy", quantity_wh=1000)])
    fills = {"sell_order_id": "s1", "buy_order_id": "b1"}
    world.ledger.append_operator([world.trade("t1", "alice", "bob", 600, **fills)])
    _refused(world, [world.trade("t2", "alice", "bob", 401, **fills)],
             "order 'b1' would be filled 1001 Wh, more than its 1000 Wh")
    _refused(world, [world.trade("t2", "carol", "bob", 100, **fills)],
             "order 's1' is a sell order of 'alice'")
    _refused(world, [world.trade("t2", "alice", "bob", 100, sell_order_id="nope")],
             "does not exist")
    _refused(world, [world.trade("t1", "alice", "bob", 100)], "trade id 't1' already recorded")
    _refused(world, [world.trade("t9", "alice", "zoe", 100)], "'zoe' is not a registered")


def test_clearing_closes_a_market_interval_and_must_match_its_trades(world):
    world.ledger.append_operator([world.trade("t1", "alice", "bob", 700),
                                  world.trade("t2", "carol", "bob", 300)])
    clearing = {"kind": "clearing", "market_id": "m", "interval": 1, "n_trades": 2,
                "volume_wh": 999}
    _refused(world, [clearing], "states 2 trades / 999 Wh but the ledger holds 2 trades / 1000 Wh")
    world.ledger.append_operator([{**clearing, "volume_wh": 1000, "price_meur_per_kwh": 200}])
    _refused(world, [world.trade("t3", "alice", "bob", 1)], "already cleared")
    with pytest.raises(InputError, match="already cleared"):
        world.ledger.append([world.order("dave", "late")])


def test_trades_are_settled_once_and_settlements_balance(world):
    trades = [world.trade("t1", "alice", "bob", 1500, 250), world.trade("t2", "carol", "bob", 500,
                                                                        180)]
    world.ledger.append_operator(trades)
    postings = settlement_postings(trades)
    assert postings == [{"account": "alice", "amount_ueur": 375_000},
                        {"account": "bob", "amount_ueur": -465_000},
                        {"account": "carol", "amount_ueur": 90_000}]
    settlement = {"kind": "settlement", "settlement_id": "s1", "market_id": "m",
                  "trade_ids": ["t1", "t2"], "postings": postings}
    unbalanced = [*postings[:-1], {"account": "carol", "amount_ueur": 89_999}]
    _refused(world, [{**settlement, "postings": unbalanced}],
             "does not balance: postings sum to -1")
    _refused(world, [{**settlement, "trade_ids": ["t1", "t1"]}], "lists a trade twice")
    _refused(world, [{**settlement, "trade_ids": ["t7"]}], "trade 't7' does not exist")
    world.ledger.append_operator([settlement])
    _refused(world, [{**settlement, "settlement_id": "s2", "trade_ids": ["t2"],
                      "postings": settlement_postings(trades[1:])}],
             "trade 't2' of market 'm' is already settled by 's1'")
    _refused(world, [settlement], "settlement id 's1' already used")
    assert world.rows("settled_trades") == 2
    assert verify_ledger(world.path).ok


def test_the_index_tables_refuse_a_double_settlement_even_if_the_rules_were_bypassed(world):
    trade = world.trade("t1", "alice", "bob", 100)
    world.ledger.append_operator([trade])
    settlement = {"kind": "settlement", "settlement_id": "s1", "market_id": "m",
                  "trade_ids": ["t1"], "postings": settlement_postings([trade])}
    world.ledger.append_operator([settlement])
    # Forget the settlement in memory only: the UNIQUE constraint on disk still refuses it.
    world.ledger.state.spending.settled.clear()
    with pytest.raises(InputError, match="database refused the batch"):
        world.ledger.append_operator([{**settlement, "settlement_id": "s2"}])


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PARTICIPANTS), st.sampled_from(PARTICIPANTS),
                          st.integers(1, 3000), st.sampled_from(["a", "b"]),
                          st.sampled_from([1, 2])), min_size=1, max_size=25))
def test_random_trades_never_sell_more_than_the_capability(tmp_path_factory, trades):
    world = make_world(tmp_path_factory.mktemp("w"), intervals=(1, 2))
    sold: dict[tuple, int] = {}
    for n, (seller, buyer, quantity, market, interval) in enumerate(trades):
        payload = world.trade(f"t{n}", seller, buyer, quantity, market=market, interval=interval)
        fits = sold.get((seller, interval), 0) + quantity <= CAPABILITY_WH
        try:
            world.ledger.append_operator([payload])
        except Rejection:
            assert not fits
        else:
            assert fits
            sold[(seller, interval)] = sold.get((seller, interval), 0) + quantity
    for key, wh in sold.items():
        assert wh <= CAPABILITY_WH == world.ledger.state.spending.capability[key]
        assert world.ledger.state.spending.sold[key] == wh
    world.ledger.close()
    assert verify_ledger(world.path).ok


def test_an_interval_has_one_spelling_so_its_energy_is_sold_once(world):
    """Interval 1 and "1" (or two spellings of one start time) were two intervals, each with its
    own sellable energy: the same energy could be sold twice."""
    capability = {"kind": "capability", "participant": "alice", "sellable_wh": 5_000,
                  "source": "forecast"}
    for spelling in ("1", "01", " 1", "2024-06-01T12:00:00+00:00", "2024-06-01T12:00Z",
                     "2024-06-01 12:00:00Z", "2024-02-30T12:00:00Z", -1, True):
        with pytest.raises(InputError, match=r"interval: invalid value .* \(expected an integer "
                                             "index >= 0 or a UTC start time"):
            world.ledger.append_operator([{**capability, "interval": spelling}])
        with pytest.raises(InputError, match="interval: invalid value"):
            world.ledger.append([world.order("alice", f"o-{spelling}", interval=spelling)])
    # intervals named by start time live in logs that name them all so
    with pytest.raises(InputError, match="this log names intervals by index"):
        world.ledger.append_operator([{**capability, "interval": "2024-06-01T12:00:00Z"}])
    world.ledger.append([world.order("alice", "s1", quantity_wh=5_000)])
    world.ledger.append_operator([world.trade("t1", "alice", "bob", 5_000, sell_order_id="s1")])
    with pytest.raises(InputError, match="double spend"):
        world.ledger.append_operator([world.trade("t2", "alice", "carol", 1)])


def test_a_log_of_start_times_takes_canonical_utc_start_times(tmp_path):
    from lemgrid.ledger.identity import generate_key
    from lemgrid.ledger.store import Ledger

    with Ledger.create(tmp_path / "t.db", generate_key(), witness_path=None) as ledger:
        ledger.append_operator([{"kind": "gate-closure", "market_id": "m",
                                 "interval": "2024-06-01T12:00:00Z"}])
        with pytest.raises(InputError, match="this log names intervals by UTC start time"):
            ledger.append_operator([{"kind": "gate-closure", "market_id": "m", "interval": 48}])
