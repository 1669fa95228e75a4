"""Seeded random P2P markets shared by the P2P tests."""

import numpy as np
import pytest

from lemgrid.market.p2p.problem import make_p2p_problem


def random_market(
    n_peers: int,
    seed: int,
    n_intervals: int = 1,
    prosumers: bool = False,
    pairs=None,
    dt_h: float = 0.25,
):
    """Half producers, half consumers; positions on a unit square give the distance matrix;
    per-pair preferences in [-0.01, 0.01] EUR/kWh and a network charge of 0.02 EUR/kWh per unit.

    With ``prosumers``, every third peer can both sell and buy, and some intervals close some
    peers (bounds on one side of zero only)."""
    rng = np.random.default_rng(seed)
    shape = (n_intervals, n_peers)
    producer = np.arange(n_peers) < n_peers // 2
    a = rng.uniform(0.02, 0.1, shape)
    b = np.where(producer, rng.uniform(0.03, 0.12, shape), rng.uniform(0.18, 0.35, shape))
    p_max = np.where(producer, rng.uniform(1.0, 6.0, shape), 0.0)
    p_min = np.where(producer, 0.0, -rng.uniform(1.0, 6.0, shape))
    if prosumers:
        pro = np.arange(n_peers) % 3 == 2
        p_max = np.where(pro, rng.uniform(0.0, 3.0, shape), p_max)
        p_min = np.where(pro, -rng.uniform(0.0, 3.0, shape), p_min)
        b = np.where(pro, rng.uniform(0.1, 0.2, shape), b)
    xy = rng.uniform(0.0, 1.0, (n_peers, 2))
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    preference = rng.uniform(-0.01, 0.01, (n_peers, n_peers))
    return make_p2p_problem(
        a_eur_per_kw2h=a,
        b_eur_per_kwh=b,
        p_min_kw=p_min,
        p_max_kw=p_max,
        dt_h=dt_h,
        peer_ids=[f"peer{i}" for i in range(n_peers)],
        pairs=pairs,
        pair_cost_eur_per_kwh=preference,
        distance=distance,
        network_charge_eur_per_kwh_per_unit=0.02,
    )


@pytest.fixture(scope="session")
def market():
    return random_market
