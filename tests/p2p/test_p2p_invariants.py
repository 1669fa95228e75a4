"""Invariants of a cleared P2P market (hypothesis over random small markets).

What holds for this model at the optimum (KKT of each peer's problem at the pair prices):
* energy balance: every sold kWh is bought, so the peers' net positions add up to zero;
* bounds: every peer's position stays within its bounds;
* individual rationality: with zero trade allowed (``p_min <= 0 <= p_max``), no peer ends up
  worse than not trading: utility (or minus cost) minus payments minus differentiation costs >= 0;
* marginal rationality: on every traded product the buyer pays, including its own
  differentiation cost, at most its marginal utility, and the seller receives, net of its own
  cost, at least its marginal cost - for peers whose net position is not at the bound that
  makes the comparison one-sided (a prosumer selling all it may can still buy to resell: the
  multiplier of its bound adds to its marginal value; the central optimum does the same).
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.market.p2p.admm import solve_p2p_admm

TOL_EUR = 1e-6
TOL_PRICE = 1e-4


def _check(pb, res):
    dt = pb.dt_h
    e = res.p_kw * dt
    assert np.abs(e.sum(axis=1)).max() <= 1e-9
    assert (e >= pb.e_min_kwh - 1e-5).all() and (e <= pb.e_max_kwh + 1e-5).all()
    q, lam = res.quantity_kwh, res.price_eur_per_kwh
    c_s, c_b = pb.seller_cost_eur_per_kwh, pb.buyer_cost_eur_per_kwh
    n_int, n_peers = e.shape
    # Net money and differentiation costs per peer: sellers earn lam - c_s, buyers pay lam + c_b.
    money = np.zeros((n_int, n_peers))
    for i in range(n_int):
        np.add.at(money[i], pb.seller, q[i] * (lam[i] - c_s))
        np.add.at(money[i], pb.buyer, -q[i] * (lam[i] + c_b))
    own_cost = pb.a_eur_per_kwh2 * e**2 + pb.b_eur_per_kwh * e
    surplus = money - own_cost
    assert surplus.min() >= -TOL_EUR, surplus.min()
    marginal = 2 * pb.a_eur_per_kwh2 * e + pb.b_eur_per_kwh  # EUR per kWh of net energy
    traded = q > 1e-6
    buyer_pays = (lam + c_b)[traded]
    seller_gets = (lam - c_s)[traded]
    rows = np.nonzero(traded)[0]
    cols = np.nonzero(traded)[1]
    buyer, seller = pb.buyer[cols], pb.seller[cols]
    buyer_free = e[rows, buyer] < pb.e_max_kwh[rows, buyer] - 1e-6
    seller_free = e[rows, seller] > pb.e_min_kwh[rows, seller] + 1e-6
    assert (buyer_pays <= marginal[rows, buyer] + TOL_PRICE)[buyer_free].all()
    assert (seller_gets >= marginal[rows, seller] - TOL_PRICE)[seller_free].all()


@settings(max_examples=25, deadline=None)
@given(
    n_peers=st.integers(2, 7),
    n_intervals=st.integers(1, 3),
    prosumers=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_cleared_market_is_balanced_and_individually_rational(market, n_peers, n_intervals, prosumers, seed):
    pb = market(n_peers, seed=seed, n_intervals=n_intervals, prosumers=prosumers)
    res = solve_p2p_admm(pb, tol_primal_kwh=1e-8, tol_dual_eur_per_kwh=1e-8)
    assert res.converged.all()
    _check(pb, res)
