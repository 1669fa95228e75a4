"""A peer-to-peer market among a community's participants, with the retailer as two peers.

Each interval is one P2P market (intervals are the batch axis of :mod:`lemgrid.market.p2p`):

- a participant whose PV exceeds its load is a *producer* of its surplus ``s`` (``0 <= p <= s``),
  with a small quadratic cost of selling (the PV itself is free);
- a participant whose load exceeds its PV is a *consumer* of its deficit ``d`` (``-d <= p <= 0``)
  with a concave utility whose marginal value stays above the retail price over ``[0, d]``, so it is
  always served: its inflexible load is met by peers or by the retailer;
- the retailer is two peers at the substation: one sells without limit at the import price
  (energy plus network charge, which already pays for the grid), one buys at the feed-in tariff.

Product differentiation: participants pay a distance-based network charge on local trades (the full
``network_charge_eur_per_kwh`` for the electrically farthest pair, proportionally less for closer
ones; Baroche et al. 2019), and may grant local trades a premium (``local_premium_eur_per_kwh``,
a negative cost). Trades with the retailer carry no extra charge. Batteries and flexible loads are
not scheduled by this design (each interval clears alone).
"""

from __future__ import annotations

import numpy as np

from lemgrid.market.p2p import P2PProblem, make_p2p_problem
from lemgrid.scenario.config import P2POptions  # the design's options (scenario format)

#: Quadratic cost coefficient of producers and curvature of consumers' utility [EUR/(kW^2 h)],
#: kept small so that marginal values stay within a cent of the linear part.
CURVATURE_EUR_PER_KW2H = 1e-4
#: How far above the retail price a consumer values its last kWh [EUR/kWh].
CONSUMER_HEADROOM_EUR_PER_KWH = 0.10

GRID_SELLER = "grid-import"
GRID_BUYER = "grid-export"


def p2p_problem(ids: np.ndarray, load_p_kw: np.ndarray, pv_p_kw: np.ndarray,
                distance: np.ndarray, dt_h: float, import_eur_per_kwh: float,
                export_eur_per_kwh: float, options: P2POptions) -> P2PProblem:
    """Build the P2P problem of a community (participants plus the two retailer peers).

    Parameters
    ----------
    ids : ndarray of str, shape (N,)
    load_p_kw, pv_p_kw : ndarray, shape (T, N)
        Inflexible load and PV of each participant [kW].
    distance : ndarray, shape (N, N)
        Electrical distance between the participants (any unit; it is normalised).
    dt_h : float
        Interval length [h].
    import_eur_per_kwh, export_eur_per_kwh : float
        Retail price (energy plus network charge) and feed-in tariff [EUR/kWh].
    options : P2POptions
    """
    n_t, n = load_p_kw.shape
    net = pv_p_kw - load_p_kw
    surplus = np.maximum(net, 0.0)
    deficit = np.maximum(-net, 0.0)
    big = float(max(deficit.sum(axis=1).max(initial=0.0), surplus.sum(axis=1).max(initial=0.0))
                ) + 1.0
    a = np.full((n_t, n + 2), CURVATURE_EUR_PER_KW2H)
    b = np.zeros((n_t, n + 2))
    # Consumers: marginal utility b + 2 a p stays above the retail price down to p = -d.
    b[:, :n] = np.where(deficit > 0, import_eur_per_kwh + CONSUMER_HEADROOM_EUR_PER_KWH
                        + 2 * CURVATURE_EUR_PER_KW2H * deficit, 0.0)
    a[:, n:] = 0.0
    b[:, n] = import_eur_per_kwh
    b[:, n + 1] = export_eur_per_kwh
    p_min = np.concatenate([-deficit, np.zeros((n_t, 1)), np.full((n_t, 1), -big)], axis=1)
    p_max = np.concatenate([surplus, np.full((n_t, 1), big), np.zeros((n_t, 1))], axis=1)

    finite = np.nan_to_num(distance, nan=0.0)
    scale = finite.max() if finite.max() > 0 else 1.0
    dist = np.zeros((n + 2, n + 2))
    dist[:n, :n] = finite / scale
    premium = np.zeros((n + 2, n + 2))
    premium[:n, :n] = -options.local_premium_eur_per_kwh
    np.fill_diagonal(premium, 0.0)
    return make_p2p_problem(
        a_eur_per_kw2h=a, b_eur_per_kwh=b, p_min_kw=p_min, p_max_kw=p_max, dt_h=dt_h,
        peer_ids=[*map(str, ids), GRID_SELLER, GRID_BUYER],
        pair_cost_eur_per_kwh=premium, distance=dist,
        network_charge_eur_per_kwh_per_unit=options.network_charge_eur_per_kwh,
        seller_share=options.seller_share,
    )
