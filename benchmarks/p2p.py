"""P2P market with product differentiation: decentralised ADMM vs the centralised optimum.

For 100 and 1,000 peers (half producers, half consumers, full mesh: every producer may sell to
every consumer, 2,500 and 250,000 products), one 15-minute interval, seeded:

* ``ADMM``: :func:`lemgrid.market.p2p.admm.solve_p2p_admm` with its default tolerances
  (reciprocity 1e-4 kWh, dual residual 1e-4 EUR/kWh), starting from the public mid price
  between an assumed feed-in tariff (0.07) and retail price (0.25 EUR/kWh);
* ``central``: :func:`lemgrid.market.p2p.central.solve_p2p_central`, the same problem as one QP
  in Clarabel with column generation (exact; the final pricing of every product certifies the
  optimum). With ``--full-qp`` the QP over all products is also timed for 1,000 peers (slow;
  it is always timed for 100 peers).

``gap`` = |welfare_admm - welfare_central| / |welfare_central|. Goal (issue 4): 1,000 peers to a
1e-3 gap in <= 10 s, faster than the centralised solve. Usage:
``python benchmarks/p2p.py [--full-qp]``; the last line printed is one JSON object.

Peers: producer cost ``a p^2 + b p`` with ``a`` in [0.02, 0.1] EUR/(kW^2 h), ``b`` in
[0.03, 0.12] EUR/kWh, capacity 1-6 kW; consumers with marginal utility ``b`` in [0.18, 0.35]
EUR/kWh and demand 1-6 kW; positions on a 1 km square give the distance for a network charge of
0.02 EUR/kWh per km (shared by the two sides), and each peer has preferences in +-0.01 EUR/kWh for
each counterpart.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from lemgrid.market.p2p.admm import solve_p2p_admm
from lemgrid.market.p2p.central import solve_p2p_central
from lemgrid.market.p2p.problem import make_p2p_problem

SEED = 20250401
PRICE0_EUR_PER_KWH = 0.5 * (0.07 + 0.25)


def market(n_peers: int, seed: int = SEED):
    rng = np.random.default_rng(seed)
    producer = np.arange(n_peers) < n_peers // 2
    shape = (1, n_peers)
    a = rng.uniform(0.02, 0.1, shape)
    b = np.where(producer, rng.uniform(0.03, 0.12, shape), rng.uniform(0.18, 0.35, shape))
    p_max = np.where(producer, rng.uniform(1.0, 6.0, shape), 0.0)
    p_min = np.where(producer, 0.0, -rng.uniform(1.0, 6.0, shape))
    xy_km = rng.uniform(0.0, 1.0, (n_peers, 2))
    distance_km = np.linalg.norm(xy_km[:, None] - xy_km[None], axis=-1)
    return make_p2p_problem(
        a_eur_per_kw2h=a,
        b_eur_per_kwh=b,
        p_min_kw=p_min,
        p_max_kw=p_max,
        dt_h=0.25,
        pair_cost_eur_per_kwh=rng.uniform(-0.01, 0.01, (n_peers, n_peers)),
        distance=distance_km,
        network_charge_eur_per_kwh_per_unit=0.02,
    )


def run(n_peers: int, full_qp: bool) -> dict:
    t0 = time.perf_counter()
    problem = market(n_peers)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    admm = solve_p2p_admm(problem, price0_eur_per_kwh=PRICE0_EUR_PER_KWH)
    admm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    central = solve_p2p_central(problem)
    central_s = time.perf_counter() - t0
    full_s = None
    if full_qp:
        t0 = time.perf_counter()
        full = solve_p2p_central(problem, column_generation=False)
        full_s = time.perf_counter() - t0
        agree = abs(full.total_welfare_eur - central.total_welfare_eur) / abs(full.total_welfare_eur)
        assert agree < 1e-7, f"column generation and full QP disagree: {agree}"
    gap = abs(admm.total_welfare_eur - central.total_welfare_eur) / abs(central.total_welfare_eur)
    key = f"peers_{n_peers}"
    out = {
        f"{key}_products": problem.n_products,
        f"{key}_build_seconds": round(build_s, 4),
        f"{key}_seconds": round(admm_s, 3),
        f"{key}_iterations": int(admm.iterations.max()),
        f"{key}_converged": bool(admm.converged.all()),
        f"{key}_gap": float(f"{gap:.3g}"),
        f"{key}_reciprocity_kwh": float(f"{admm.primal_residual_kwh.max():.3g}"),
        f"{key}_welfare_eur": round(admm.total_welfare_eur, 6),
        f"{key}_central_welfare_eur": round(central.total_welfare_eur, 6),
        f"{key}_central_seconds": round(central_s, 3),
        f"{key}_central_full_qp_seconds": None if full_s is None else round(full_s, 3),
    }
    print(
        f"{n_peers} peers ({problem.n_products} products): ADMM {admm_s:.2f} s, "
        f"{out[key + '_iterations']} iterations, gap {gap:.2e}; central (column generation) "
        f"{central_s:.2f} s; full QP {'-' if full_s is None else f'{full_s:.2f} s'}",
        flush=True,
    )
    return out


def main() -> None:
    full_qp_1000 = "--full-qp" in sys.argv[1:]
    result = {"seed": SEED, "price0_eur_per_kwh": PRICE0_EUR_PER_KWH}
    result |= run(100, full_qp=True)
    result |= run(1000, full_qp=full_qp_1000)
    result["goal_1000_within_10s_and_1e-3"] = (
        result["peers_1000_seconds"] <= 10.0 and result["peers_1000_gap"] <= 1e-3
    )
    result["goal_1000_faster_than_central"] = (
        result["peers_1000_seconds"] < result["peers_1000_central_seconds"]
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
