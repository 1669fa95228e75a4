"""Decentralised ADMM against the centralised HiGHS optimum, and both against closed forms."""

import numpy as np
import pytest

from lemgrid.market.p2p.admm import solve_p2p_admm
from lemgrid.market.p2p.central import solve_p2p_central
from lemgrid.market.p2p.problem import make_p2p_problem

WELFARE_RTOL = 1e-3  # the requirement
RECIPROCITY_KWH = 1e-3


def test_two_peers_match_the_closed_form():
    # Producer cost a1 p^2 + b1 p, consumer utility b2 d - a2 d^2 (per hour, p and d in kW);
    # with differentiation costs cs + cb per kWh the optimum equates marginal cost and utility:
    # 2 a1 q + b1 + cs = b2 - 2 a2 q - cb  (q in kW, bounds not binding).
    a1, b1, a2, b2, cs, cb = 0.04, 0.06, 0.03, 0.30, 0.01, -0.005
    pref = np.array([[0.0, cs], [cb, 0.0]])
    pb = make_p2p_problem(
        a_eur_per_kw2h=[a1, a2], b_eur_per_kwh=[b1, b2], p_min_kw=[0.0, -10.0],
        p_max_kw=[10.0, 0.0], dt_h=0.25, pair_cost_eur_per_kwh=pref,
    )
    q_kw = (b2 - b1 - cs - cb) / (2 * (a1 + a2))
    price = 2 * a1 * q_kw + b1 + cs  # the seller's marginal cost plus its own charge
    welfare = 0.25 * ((b2 * q_kw - a2 * q_kw**2) - (a1 * q_kw**2 + b1 * q_kw) - (cs + cb) * q_kw)
    central = solve_p2p_central(pb)
    admm = solve_p2p_admm(pb, tol_primal_kwh=1e-8, tol_dual_eur_per_kwh=1e-8)
    for res in (central, admm):
        assert res.p_kw[0] == pytest.approx([q_kw, -q_kw], abs=1e-6)
        assert res.quantity_kwh[0, 0] == pytest.approx(0.25 * q_kw, abs=1e-6)
        assert res.price_eur_per_kwh[0, 0] == pytest.approx(price, abs=1e-6)
        assert res.welfare_eur[0] == pytest.approx(welfare, rel=1e-9, abs=1e-9)


def test_central_column_generation_equals_the_full_qp(market):
    pb = market(40, seed=11, n_intervals=2, prosumers=True)
    full = solve_p2p_central(pb, column_generation=False)
    cg = solve_p2p_central(pb, column_generation=True, columns_per_peer=2)
    assert cg.welfare_eur == pytest.approx(full.welfare_eur, rel=1e-7)
    assert cg.p_kw == pytest.approx(full.p_kw, abs=1e-5)


@pytest.mark.parametrize(
    "n_peers, n_intervals, prosumers, seed",
    [(10, 3, False, 1), (10, 4, True, 2), (100, 1, False, 3), (100, 2, True, 4)],
)
def test_admm_reaches_the_central_optimum(market, n_peers, n_intervals, prosumers, seed):
    pb = market(n_peers, seed=seed, n_intervals=n_intervals, prosumers=prosumers)
    central = solve_p2p_central(pb)
    admm = solve_p2p_admm(pb, price0_eur_per_kwh=0.15)
    assert admm.converged.all()
    gap = np.abs(admm.welfare_eur - central.welfare_eur) / np.abs(central.welfare_eur)
    assert gap.max() <= WELFARE_RTOL, gap
    # Seller's and buyer's view of every product agree.
    assert np.abs(admm.seller_view_kwh - admm.buyer_view_kwh).max() <= RECIPROCITY_KWH
    # Schedules agree with the optimum at the scale of the tolerance (the optimum of p is unique:
    # strictly convex costs).
    assert np.abs(admm.p_kw - central.p_kw).max() * pb.dt_h <= 0.02


def test_admm_prices_match_the_central_duals_on_traded_products(market):
    pb = market(10, seed=5, n_intervals=2)
    central = solve_p2p_central(pb)
    admm = solve_p2p_admm(pb, tol_primal_kwh=1e-8, tol_dual_eur_per_kwh=1e-8)
    traded = central.quantity_kwh > 1e-3
    assert traded.sum() >= 5
    assert admm.price_eur_per_kwh[traded] == pytest.approx(central.price_eur_per_kwh[traded], abs=1e-5)
    assert admm.welfare_eur == pytest.approx(central.welfare_eur, rel=1e-7)


def test_given_pairs_restrict_trading(market):
    full = market(12, seed=8)
    ring = np.array([[i, (i + 1) % 12] for i in range(12)] + [[i, (i + 6) % 12] for i in range(6)])
    sparse = market(12, seed=8, pairs=ring)
    assert sparse.n_products < full.n_products
    central = solve_p2p_central(sparse)
    admm = solve_p2p_admm(sparse)
    assert abs(admm.welfare_eur[0] - central.welfare_eur[0]) <= WELFARE_RTOL * central.welfare_eur[0]
    # Fewer trading options can only lower welfare.
    assert central.welfare_eur[0] <= solve_p2p_central(full).welfare_eur[0] + 1e-9


def test_linear_costs_are_handled_exactly(market):
    # a = 0 for some peers: their local problems are not strictly convex; ADMM must still agree.
    pb = market(10, seed=9, n_intervals=2)
    a = pb.a_eur_per_kw2h.copy()
    a[:, ::3] = 0.0
    pb = make_p2p_problem(
        a_eur_per_kw2h=a, b_eur_per_kwh=pb.b_eur_per_kwh, p_min_kw=pb.p_min_kw,
        p_max_kw=pb.p_max_kw, dt_h=pb.dt_h,
    )
    central = solve_p2p_central(pb)
    admm = solve_p2p_admm(pb, tol_primal_kwh=1e-6, tol_dual_eur_per_kwh=1e-6)
    assert admm.welfare_eur == pytest.approx(central.welfare_eur, rel=1e-4)


def test_clear_p2p_entry_point_and_welfare_gap(market):
    from lemgrid.errors import InputError
    from lemgrid.market.p2p import clear_p2p, welfare_gap

    pb = market(8, seed=12, n_intervals=2)
    admm = clear_p2p(pb, "admm", price0_eur_per_kwh=0.15)
    central = clear_p2p(pb, "central")
    assert (admm.method, central.method) == ("admm", "central")
    assert welfare_gap(admm, central) <= WELFARE_RTOL
    assert welfare_gap(central, central) == 0.0
    with pytest.raises(InputError, match="method must be one of"):
        clear_p2p(pb, "auction")
