"""P2P problem building: structure, differentiation costs, bad and infeasible input."""

import numpy as np
import pytest

from lemgrid.errors import InfeasibleError, InputError
from lemgrid.market.p2p.admm import solve_p2p_admm
from lemgrid.market.p2p.central import solve_p2p_central
from lemgrid.market.p2p.problem import make_p2p_problem

BASE = dict(
    a_eur_per_kw2h=[0.05, 0.05, 0.05],
    b_eur_per_kwh=[0.05, 0.30, 0.25],
    p_min_kw=[0.0, -2.0, -1.0],
    p_max_kw=[3.0, 0.0, 0.5],
    peer_ids=["pv", "home", "flat"],
)


def test_full_mesh_products_respect_who_can_sell_and_buy():
    pb = make_p2p_problem(**BASE)
    # pv sells to home and flat; flat (prosumer) sells to home; nobody sells to pv.
    assert list(zip(pb.seller.tolist(), pb.buyer.tolist())) == [(0, 1), (0, 2), (2, 1)]


def test_pairs_give_both_directions_only_where_possible():
    pb = make_p2p_problem(**BASE, pairs=[[1, 2], [2, 1]])
    assert list(zip(pb.seller.tolist(), pb.buyer.tolist())) == [(2, 1)]


def test_differentiation_costs_combine_preference_and_shared_network_charge():
    pref = np.zeros((3, 3))
    pref[1, 0] = -0.02  # home prefers pv's energy (a premium)
    pref[0, 1] = 0.01
    d = np.full((3, 3), 2.0)
    pb = make_p2p_problem(
        **BASE, pair_cost_eur_per_kwh=pref, distance=d, network_charge_eur_per_kwh_per_unit=0.01,
        seller_share=0.25,
    )
    k = 0  # pv -> home
    assert pb.seller_cost_eur_per_kwh[k] == pytest.approx(0.01 + 0.25 * 0.02)
    assert pb.buyer_cost_eur_per_kwh[k] == pytest.approx(-0.02 + 0.75 * 0.02)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"b_eur_per_kwh": [0.05, np.nan, 0.25]}, "b_eur_per_kwh: peer 'home', interval 0"),
        ({"p_min_kw": [4.0, -2.0, -1.0]}, "peer 'pv', interval 0: p_min_kw 4.0 > p_max_kw 3.0"),
        ({"a_eur_per_kw2h": [0.05, -1.0, 0.05]}, "peer 'home', interval 0, must be >= 0"),
        ({"p_max_kw": [3.0, 0.0, np.inf]}, "p_max_kw: peer 'flat', interval 0"),
        ({"pairs": [[0, 3]]}, "pairs row 0: peer index [0, 3] out of range 0..2"),
        ({"pairs": [[1, 1]]}, "pairs row 0: a peer cannot trade with itself"),
        ({"pairs": [[0.5, 1]]}, "pairs must be an integer array"),
        ({"peer_ids": ["a", "a", "b"]}, "peer_ids: 'a' appears more than once"),
        ({"peer_ids": ["a", "b"]}, "peer_ids has 2 names for 3 peers"),
        ({"dt_h": 0.0}, "dt_h must be > 0"),
        ({"distance": -np.ones((3, 3)), "network_charge_eur_per_kwh_per_unit": 0.1}, "distance[0, 0]"),
        ({"network_charge_eur_per_kwh_per_unit": 0.1}, "no distance matrix"),
        ({"pair_cost_eur_per_kwh": np.ones((2, 2))}, "pair_cost_eur_per_kwh has shape (2, 2)"),
    ],
)
def test_bad_input_names_the_field_and_the_peer(change, message):
    with pytest.raises(InputError) as err:
        make_p2p_problem(**(BASE | change))
    assert message in str(err.value)


@pytest.mark.parametrize("solve", [solve_p2p_admm, solve_p2p_central])
def test_must_sell_peer_without_enough_buyers_is_named(solve):
    pb = make_p2p_problem(**(BASE | {"p_min_kw": [3.5, -2.0, -1.0], "p_max_kw": [4.0, 0.0, 0.5]}))
    with pytest.raises(InfeasibleError, match="peer 'pv', interval 0: must sell at least 3.5 kW"):
        solve(pb)


@pytest.mark.parametrize("solve", [solve_p2p_admm, solve_p2p_central])
def test_competing_must_sell_peers_are_named_by_the_elastic_lp(solve):
    # Each producer alone could be absorbed (2 kW of demand), together they cannot.
    pb = make_p2p_problem(
        a_eur_per_kw2h=[0.05, 0.05, 0.05],
        b_eur_per_kwh=[0.05, 0.06, 0.30],
        p_min_kw=[1.5, 1.5, -2.0],
        p_max_kw=[3.0, 3.0, 0.0],
        peer_ids=["pv1", "pv2", "home"],
    )
    kwargs = {"max_iter": 300} if solve is solve_p2p_admm else {}
    with pytest.raises(InfeasibleError, match="no P2P schedule meets every peer's bounds: peers '"):
        solve(pb, **kwargs)


def test_trades_table_has_the_cli_columns(market):
    res = solve_p2p_central(market(6, seed=3, n_intervals=2))
    table = res.trades_table()
    assert list(table.columns) == ["interval", "seller", "buyer", "quantity_kwh", "price_eur_per_kwh"]
    assert set(table["interval"]) == {0, 1}
    assert (table["quantity_kwh"] > 0).all()
    # Every sold kWh is bought: table totals equal the peers' schedules.
    for i in (0, 1):
        rows = table[table["interval"] == i]
        sold = rows.groupby("seller")["quantity_kwh"].sum()
        for peer, kwh in sold.items():
            n = res.peer_ids.index(peer)
            bought = rows.loc[rows["buyer"] == peer, "quantity_kwh"].sum()
            assert kwh - bought == pytest.approx(res.p_kw[i, n] * res.dt_h, abs=1e-9)
