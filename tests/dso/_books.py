"""Small books of the DSO's flexibility market: up offers at one bus and interval, and one
request for them."""

from __future__ import annotations

import numpy as np

from lemgrid.dso.flexibility import UP, FlexOffers, FlexRequests, price_curves


def up_offers(kw, price, min_kw=None, curves=None) -> FlexOffers:
    """Up offers of one battery each at bus 0, interval 0: ``kw`` [kW], ``price`` [EUR/kWh],
    optionally minimum acceptance quantities [kW] and price curves ((m, 2) points or None)."""
    n = len(kw)
    return FlexOffers(
        provider=np.array([f"p{i}" for i in range(n)]), participant=np.arange(n),
        kind=np.full(n, "battery"), asset=np.arange(n), bus=np.zeros(n, int),
        interval=np.zeros(n, int), direction=np.full(n, UP), kw=np.asarray(kw, float),
        price_eur_per_kwh=np.asarray(price, float), availability_eur_per_kw_h=np.zeros(n),
        window_start=np.zeros(n, int), window_stop=np.ones(n, int),
        min_kw=None if min_kw is None else np.asarray(min_kw, float),
        price_curve=None if curves is None else price_curves(curves))


def up_request(kw: float, max_price: float = 1.0) -> FlexRequests:
    """The TSO's request for ``kw`` up at interval 0, at most ``max_price`` [EUR/kWh]."""
    return FlexRequests(buyer=np.array(["TSO"]), service=np.array(["balancing"]),
                        interval=np.array([0]), area=np.ones((1, 1), bool),
                        direction=np.array([UP]), kw=np.array([kw]),
                        max_price_eur_per_kwh=np.array([max_price]))
