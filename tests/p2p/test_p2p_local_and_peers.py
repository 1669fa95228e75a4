"""The exact local sub-problem solver and the message-passing reference."""

import numpy as np
import pytest

from lemgrid.market.p2p.admm import solve_local_subproblems, solve_p2p_admm
from lemgrid.market.p2p.peer import run_message_passing, solve_local_breakpoints


def _random_local(rng, n_peers):
    counts = rng.integers(1, 9, n_peers)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    size = counts.sum()
    sells = rng.random(size) < 0.5
    cap = rng.uniform(0.0, 3.0, size) * (rng.random(size) > 0.15)  # some products closed
    lo, hi = np.where(sells, 0.0, -cap), np.where(sells, cap, 0.0)
    w0 = rng.normal(0.0, 2.0, size)
    rho = rng.uniform(0.05, 3.0, n_peers)
    a = rng.uniform(0.0, 1.0, n_peers) * (rng.random(n_peers) > 0.25)  # some linear costs
    b = rng.normal(0.2, 0.2, n_peers)
    lo_sum, hi_sum = np.add.reduceat(lo, starts), np.add.reduceat(hi, starts)
    e_min = np.minimum(np.maximum(lo_sum, rng.uniform(-5.0, 1.0, n_peers)), hi_sum)
    e_max = np.maximum(np.minimum(hi_sum, rng.uniform(-1.0, 5.0, n_peers)), e_min)
    return w0, lo, hi, rho, a, b, e_min, e_max, starts, counts


def _highs_local(w0, lo, hi, rho, a, b, e_min, e_max):
    """The same sub-problem as a generic QP in HiGHS: variables (t, e), row e - sum t = 0."""
    import highspy

    n = w0.size
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    lower = np.r_[lo, e_min]
    upper = np.r_[hi, e_max]
    # 1/2 x'Qx + c'x with Q = diag(rho, ..., rho, 2a); the constant rho/2 w0^2 is dropped.
    cost = np.r_[-rho * w0, b]
    h.addVars(n + 1, lower, upper)
    h.changeColsCost(n + 1, np.arange(n + 1, dtype=np.int32), cost)
    h.addRow(0.0, 0.0, n + 1, np.arange(n + 1, dtype=np.int32), np.r_[-np.ones(n), 1.0])
    diag = np.r_[np.full(n, rho), 2 * a]
    nz = np.flatnonzero(diag > 0)
    start = np.searchsorted(nz, np.arange(n + 2)).astype(np.int32)
    h.passHessian(n + 1, nz.size, highspy.HessianFormat.kTriangular, start, nz.astype(np.int32),
                  diag[nz])
    assert inf > 0
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return np.asarray(h.getSolution().col_value)[:n]


def test_vectorised_local_solver_matches_a_generic_qp_and_the_breakpoint_method():
    rng = np.random.default_rng(42)
    args = _random_local(rng, 200)
    w0, lo, hi, rho, a, b, e_min, e_max, starts, counts = args
    mu, t, e = solve_local_subproblems(*args, mu0=rng.normal(0.0, 1.0, 200))
    assert np.add.reduceat(t, starts) == pytest.approx(e)
    assert (t >= lo - 1e-12).all() and (t <= hi + 1e-12).all()
    assert (e >= e_min - 1e-9).all() and (e <= e_max + 1e-9).all()
    for j in range(200):
        sl = slice(starts[j], starts[j] + counts[j])
        local = (w0[sl], lo[sl], hi[sl], rho[j], a[j], b[j], e_min[j], e_max[j])
        # HiGHS' QP optimality tolerance is ~1e-7; the two exact methods agree to rounding.
        assert t[sl] == pytest.approx(_highs_local(*local), abs=1e-5)
        assert t[sl] == pytest.approx(solve_local_breakpoints(*local)[1], abs=1e-10)


def test_message_passing_peers_reproduce_the_vectorised_iterates(market):
    pb = market(6, seed=21, n_intervals=2, prosumers=True)
    rounds = 25
    history = run_message_passing(pb, rho_eur_per_kwh2=0.4, iterations=rounds, alpha=1.5,
                                  price0_eur_per_kwh=0.1)
    seen = []

    def record(it, state):
        assert state["intervals"].tolist() == [0, 1]
        seen.append({k: state[k].copy() for k in ("seller_kwh", "buyer_kwh", "price_eur_per_kwh")})

    solve_p2p_admm(pb, rho_eur_per_kwh2=0.4, alpha=1.5, accelerate=False, adaptive_rho=False,
                   price0_eur_per_kwh=0.1, max_iter=rounds, tol_primal_kwh=0.0, callback=record)
    assert len(seen) == rounds
    moved = 0.0
    for vec, msg in zip(seen, history):
        for key in ("seller_kwh", "buyer_kwh", "price_eur_per_kwh"):
            assert vec[key] == pytest.approx(msg[key], abs=1e-9)
        moved = max(moved, np.abs(vec["seller_kwh"]).max())
    assert moved > 0.1  # the comparison is not between two idle markets
