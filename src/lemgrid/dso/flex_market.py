"""Clearing flexibility: which offers to activate, and at what price.

Two variants, as in the review's systems:

- **optimal** (iPower, EMPOWER, SmartNet, StoreNet): one LP per session chooses the least-cost set
  of activations that brings every linearised voltage and loading back within limits and meets
  every explicit request; an offer's grid effect is its bus's sensitivity, so a kW far down the
  feeder is worth more than one near the transformer. Pay-as-bid pays each offer its price;
  pay-as-clear pays each activated offer its marginal value (price minus its reduced cost: the
  LP's locational value of a kW there), never less than its price.
- **continuous** (ENERA, NODES, GOPACS, Piclo Flex): needs are served one by one in time order
  from an order book sorted by cost per unit of grid effect (price / sensitivity), each offer paid
  its own price.

Requests with an area and kW (TSO balancing, a DSO's planned product) count the power of the
offers in the area and direction; offers above the request's maximum price are not used for it.
When one LP serves requests and the DSO's grid need together, each request's buyer pays for the
kW it requested and the DSO for the rest (:func:`_assign_buyers`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.dso.flexibility import (
    Activations,
    FlexOffers,
    FlexRequests,
    curve_cost_eur_per_h,
    curve_price_eur_per_kwh,
)
from lemgrid.grid.kpis import GridLimits
from lemgrid.grid.sensitivity import Linearization
from lemgrid.market.lp import LinearProgram

#: Penalty on a linearised limit left violated [EUR per p.u. / per % and interval]: the need is
#: then handed to the red phase (direct control), not silently dropped.
VOLTAGE_SLACK_EUR_PER_PU = 1e5
LOADING_SLACK_EUR_PER_PERCENT = 1e3
REQUEST_SLACK_EUR_PER_KWH = 1e3
#: Steps each segment of a price curve is cut into in the LP: a step costs its midpoint price,
#: so the LP's cost is the curve's own at every step boundary and above it by at most
#: slope x (segment kW / STEPS)^2 / 8 in between.
CURVE_STEPS_PER_SEGMENT = 16


@dataclass(frozen=True, eq=False)
class GridNeed:
    """Linearised grid limits at some intervals of a session.

    Attributes
    ----------
    intervals : ndarray of int, shape (Ti,)
        Session intervals the rows of ``linearization`` belong to.
    linearization : Linearization
        Sensitivities at the current schedule of those intervals.
    limits : GridLimits
    voltage_margin_pu : ndarray (Ti, n_bus)
    loading_margin_percent : ndarray (Ti, n_branch)
    monitored : ndarray of int
        Buses whose voltage is limited.
    service : ndarray of str (Ti,)
        'CM', 'VM' or 'CM+VM' (what the interval's violation is).
    """

    intervals: np.ndarray
    linearization: Linearization
    limits: GridLimits
    voltage_margin_pu: np.ndarray
    loading_margin_percent: np.ndarray
    monitored: np.ndarray
    service: np.ndarray

    def effects(self, offers: FlexOffers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each offer in a need interval: its need row, its voltage effect per kW on the
        monitored buses (K, M) and its loading effect per kW (K, n_branch)."""
        row_of = np.full(int(max(self.intervals.max(initial=-1), offers.interval.max(initial=-1)))
                         + 1, -1)
        row_of[self.intervals] = np.arange(len(self.intervals))
        rows = row_of[offers.interval]
        lin = self.linearization
        safe = np.maximum(rows, 0)
        dv = lin.dvm_dp[safe][:, self.monitored, :][np.arange(len(offers)), :, offers.bus]
        dl = lin.dloading_dp[safe][np.arange(len(offers)), :, offers.bus]
        sign = offers.direction[:, None]
        return rows, dv * sign, dl * sign


def clear_optimal(offers: FlexOffers, capacity_kw: np.ndarray, dt_h: float, *,
                  need: GridNeed | None = None, requests: FlexRequests | None = None,
                  budgets=None, pricing: str = "pay-as-bid", buyer: str = "DSO",
                  hard_grid_limits: bool = False,
                  price_cap_eur_per_kwh: float | None = None) -> tuple[Activations, dict]:
    """Least-cost activations for the grid need and the requests (one LP).

    Parameters
    ----------
    offers : FlexOffers
    capacity_kw : ndarray
        What is left of each offer (after earlier markets) [kW].
    dt_h : float
    need : GridNeed, optional
        Linearised limits to restore (DSO).
    requests : FlexRequests, optional
        Explicit requests to meet.
    budgets : (scipy.sparse matrix, ndarray), optional
        ``A @ kw <= upper``: energy limits of assets across intervals
        (:func:`lemgrid.dso.flexibility.energy_budgets`).
    pricing : {'pay-as-bid', 'pay-as-clear'}
    price_cap_eur_per_kwh : float, optional
        Most a pay-as-clear price may be (never below an offer's bid): where the offers cannot
        meet the need, the marginal value is the penalty of the unmet limit, not a price anyone
        would pay (the DSO's alternative is direct control at the regulated price).
    buyer : str
        Buyer of grid-need activations.
    hard_grid_limits : bool
        Limits may not be violated (used when another buyer's activations must not harm the DSO's
        grid: they are then left out instead of paid for with a penalty).

    Offers with a minimum acceptance quantity (``offers.min_kw``) that no earlier market has
    used (``capacity_kw`` still their ``kw``) are activated at least that much or not at all: a
    binary per such offer makes the problem a MILP (HiGHS branch and bound); under pay-as-clear
    the LP with those choices fixed gives the prices.

    Offers with a price curve (``offers.price_curve``) are cleared on the part an earlier market
    left (the top ``capacity_kw`` of the curve), cut into :data:`CURVE_STEPS_PER_SEGMENT` steps
    per segment; only the steps within a request's maximum price count for it. Pay-as-bid pays
    the curve's own cost of the activated part (its integral), pay-as-clear the marginal value,
    never below the curve's price at the last kW activated.

    Returns
    -------
    activations : Activations
    unmet : dict
        'voltage_pu', 'loading_percent', 'request_kwh': what remained uncovered.
    """
    lp = LinearProgram()
    k = len(offers)
    curved = offers.curved
    start_kw = np.where(curved, offers.kw - capacity_kw, 0.0)  # taken by earlier markets
    a = lp.var(k, ub=capacity_kw, cost=np.where(curved, 0.0, offers.price_eur_per_kwh) * dt_h)
    step_offer, step_kw, step_price = _curve_steps(offers, start_kw)
    steps = lp.var(len(step_kw), ub=step_kw, cost=step_price * dt_h)
    if len(step_kw):
        owners = np.unique(step_offer)
        sums = lp.rows(len(owners), lower=0.0, upper=0.0)  # a curved offer = its steps
        lp.coef(sums, a[owners], 1.0)
        lp.coef(sums[np.searchsorted(owners, step_offer)], steps, -1.0)
    unmet = {"voltage_pu": 0.0, "loading_percent": 0.0, "request_kwh": 0.0}
    v_slack = l_slack = r_slack = None
    if need is not None and k:
        lin, limits = need.linearization, need.limits
        rows_of_offer, dv, dl = need.effects(offers)
        ti = len(need.intervals)
        vm0 = lin.vm_pu[:, need.monitored]
        margin = need.voltage_margin_pu[:, need.monitored]
        v_rows = lp.rows((ti, len(need.monitored)), lower=limits.vm_min_pu + margin - vm0,
                         upper=limits.vm_max_pu - margin - vm0)
        in_need = rows_of_offer >= 0
        kk = np.flatnonzero(in_need)
        lp.coef(v_rows[rows_of_offer[kk]], a[kk][:, None], dv[kk])
        l_rows = lp.rows(lin.loading_percent.shape, upper=limits.max_loading_percent
                         - need.loading_margin_percent - lin.loading_percent)
        lp.coef(l_rows[rows_of_offer[kk]], a[kk][:, None], dl[kk])
        if not hard_grid_limits:
            v_slack = lp.var((ti, len(need.monitored), 2), cost=VOLTAGE_SLACK_EUR_PER_PU)
            lp.coef(v_rows, v_slack[:, :, 0], 1.0)
            lp.coef(v_rows, v_slack[:, :, 1], -1.0)
            l_slack = lp.var(lin.loading_percent.shape, cost=LOADING_SLACK_EUR_PER_PERCENT)
            lp.coef(l_rows, l_slack, -1.0)
        else:
            # Limits already violated before any activation stay as they are (not this buyer's
            # problem), but its activations may not make them worse.
            lower = np.minimum(limits.vm_min_pu - vm0, 0.0)
            upper = np.maximum(limits.vm_max_pu - vm0, 0.0)
            lp.set_row_bounds(v_rows, lower, upper)
            lp.set_row_bounds(l_rows, -np.inf, np.maximum(
                limits.max_loading_percent - lin.loading_percent, 0.0))
    if requests is not None and len(requests) and k:
        there = ((offers.interval[None, :] == requests.interval[:, None])
                 & requests.area[:, offers.bus])
        same = offers.direction[None, :] == requests.direction[:, None]
        match = there & same & (offers.price_eur_per_kwh[None, :]
                                <= requests.max_price_eur_per_kwh[:, None])
        req_rows = lp.rows(len(requests), lower=requests.kw)
        r, o = np.nonzero(match & ~curved[None, :])
        lp.coef(req_rows[r], a[o], 1.0)
        r, j = np.nonzero(there[:, step_offer] & same[:, step_offer]
                          & (step_price[None, :] <= requests.max_price_eur_per_kwh[:, None]))
        lp.coef(req_rows[r], steps[j], 1.0)
        r, o = np.nonzero(match)  # (curved offers: by their first price)
        # A resource counts for a request with its net move: its activation the other way at
        # that interval takes from it, so up and down on one battery cannot meet a request on
        # paper (and make energy for other intervals) while it moves nothing.
        _, resource = np.unique(offers.resource, return_inverse=True)
        counted = np.zeros((len(requests), resource.max() + 1), bool)
        counted[r, resource[o]] = True
        r, o = np.nonzero(there & ~same & counted[:, resource])
        lp.coef(req_rows[r], a[o], -1.0)
        r_slack = lp.var(len(requests), cost=REQUEST_SLACK_EUR_PER_KWH * dt_h)
        lp.coef(req_rows, r_slack, 1.0)
    if budgets is not None and budgets[0].shape[0] and k:
        matrix = budgets[0].tocoo()
        budget_rows = lp.rows(matrix.shape[0], upper=budgets[1])
        lp.coef(budget_rows[matrix.row], a[matrix.col], matrix.data)
    if not k:
        return Activations.empty(), unmet
    blocks = np.flatnonzero((offers.min_kw > 1e-9) & (capacity_kw >= offers.kw - 1e-9))
    if len(blocks):
        on = lp.var(len(blocks), ub=1.0, integer=True)
        at_most = lp.rows(len(blocks), upper=0.0)  # a <= capacity * on
        lp.coef(at_most, a[blocks], 1.0)
        lp.coef(at_most, on, -np.asarray(capacity_kw, float)[blocks])
        at_least = lp.rows(len(blocks), lower=0.0)  # a >= min * on
        lp.coef(at_least, a[blocks], 1.0)
        lp.coef(at_least, on, -offers.min_kw[blocks])
    solution = lp.solve()
    if len(blocks) and solution.status == "Optimal" and pricing == "pay-as-clear":
        lp.fix(on, np.round(solution[on]))
        solution = lp.solve()
    if solution.status != "Optimal":
        return Activations.empty(), {"voltage_pu": np.inf, "loading_percent": np.inf,
                                     "request_kwh": np.inf}
    kw = solution[a]
    if v_slack is not None and l_slack is not None:
        unmet["voltage_pu"] = float(solution[v_slack].max(initial=0.0))
        unmet["loading_percent"] = float(solution[l_slack].max(initial=0.0))
    if r_slack is not None:
        unmet["request_kwh"] = float(solution[r_slack].sum() * dt_h)
    used = np.flatnonzero(kw > 1e-6)
    # the bid: flat offers their price; curved ones the curve's average over the part
    # activated (pay-as-bid) or its price at the last kW (the least pay-as-clear may pay)
    bid = offers.price_eur_per_kwh[used].astype(float)
    for i in np.flatnonzero(curved[used]):
        j = used[i]
        curve, lo, hi = offers.price_curve[j], start_kw[j], start_kw[j] + kw[j]
        bid[i] = (curve_cost_eur_per_h(curve, lo, hi) / kw[j] if pricing == "pay-as-bid"
                  else float(curve_price_eur_per_kwh(curve, hi)))
    price = bid
    if pricing == "pay-as-clear":
        # Marginal value of the offer's location and direction: its cost in the objective
        # minus its reduced cost (a curved offer's column costs nothing: its steps do).
        cost = np.where(curved[used], 0.0, offers.price_eur_per_kwh[used])
        price = np.maximum(bid, cost - solution.col_dual[a[used]] / dt_h)
        if price_cap_eur_per_kwh is not None:
            price = np.maximum(np.minimum(price, price_cap_eur_per_kwh), bid)
    return _assign_buyers(offers, used, kw[used], price, need, requests, buyer), unmet


def _curve_steps(offers: FlexOffers, start_kw: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LP's steps of the curved offers' parts left from ``start_kw`` on: each step's offer,
    width [kW] and midpoint price [EUR/kWh]."""
    offer, width, price = [], [], []
    for k in np.flatnonzero(offers.curved):
        curve = offers.price_curve[k]
        points = np.unique(np.clip(curve[:, 0], start_kw[k], offers.kw[k]))
        edges = np.unique(np.concatenate([np.linspace(x0, x1, CURVE_STEPS_PER_SEGMENT + 1)
                                          for x0, x1 in zip(points[:-1], points[1:])]
                                         or [points]))
        widths = np.diff(edges)
        keep = widths > 1e-12
        offer.append(np.full(int(keep.sum()), k))
        width.append(widths[keep])
        price.append(curve_price_eur_per_kwh(curve, (edges[:-1] + edges[1:])[keep] / 2))
    if not offer:
        return np.array([], int), np.array([]), np.array([])
    return np.concatenate(offer), np.concatenate(width), np.concatenate(price)


def _assign_buyers(offers: FlexOffers, used: np.ndarray, kw: np.ndarray, price: np.ndarray,
                   need: GridNeed | None, requests: FlexRequests | None, buyer: str
                   ) -> Activations:
    """Activations with the buyer who asked for them: each request gets its kW from the
    activations that count for it (same interval and direction, in its area, within its price),
    pro rata where more is activated than it asked for; the rest serves the grid need and is
    bought by ``buyer``. An activation serving two buyers is split into one row per buyer."""
    need_service: str | np.ndarray = "CM"
    if need is not None:
        row_of = dict(zip(need.intervals.tolist(), need.service.tolist(), strict=True))
        need_service = np.array([row_of.get(int(t), "CM") for t in offers.interval[used]],
                                dtype=object)
    service_of_need = np.broadcast_to(np.asarray(need_service, dtype=object), len(used))
    left = kw.astype(float).copy()
    rows, parts, buyers, services = [], [], [], []
    if requests is not None:
        for q in range(len(requests)):
            match = np.flatnonzero((offers.interval[used] == requests.interval[q])
                                   & (offers.direction[used] == requests.direction[q])
                                   & requests.area[q, offers.bus[used]]
                                   & (offers.price_eur_per_kwh[used]
                                      <= requests.max_price_eur_per_kwh[q])
                                   & (left > 1e-9))
            available = left[match].sum()
            if available <= 1e-9:
                continue
            take = left[match] * min(1.0, requests.kw[q] / available)
            left[match] -= take
            rows.append(match)
            parts.append(take)
            buyers.append(np.full(len(match), requests.buyer[q], dtype=np.object_))
            services.append(np.full(len(match), requests.service[q], dtype=np.object_))
    rest = np.flatnonzero(left > 1e-9)
    rows.append(rest)
    parts.append(left[rest])
    buyers.append(np.full(len(rest), buyer, dtype=object))
    services.append(service_of_need[rest])
    j = np.concatenate(rows).astype(int)
    keep = np.concatenate(parts) > 1e-9
    j = j[keep]
    return Activations(offer=used[j], kw=np.concatenate(parts)[keep],
                       price_eur_per_kwh=np.asarray(price)[j],
                       buyer=np.concatenate(buyers)[keep].astype(str),
                       service=np.concatenate(services)[keep].astype(str))


def one_price_per_product(rounds: list[tuple[FlexOffers, Activations]]
                          ) -> list[tuple[FlexOffers, Activations]]:
    """Pay-as-clear over a session's clearing rounds (the DSO re-clears with re-linearised
    sensitivities until AC holds): every activation of a product - interval, buyer, service,
    direction and bus (the DSO's prices are locational) - is paid the highest price that product
    cleared at in any round. Each round's price is at least the bid of every offer it activated,
    so the common price is too.

    Parameters
    ----------
    rounds : list of (FlexOffers, Activations)
        Each round's offers and the activations cleared from them.

    Returns
    -------
    list of (FlexOffers, Activations)
        The same rounds, activations re-priced.
    """
    from dataclasses import replace

    def products(offers, acts):
        k = acts.offer
        return list(zip(offers.interval[k].tolist(), acts.buyer.tolist(), acts.service.tolist(),
                        offers.direction[k].tolist(), offers.bus[k].tolist(), strict=True))

    best: dict[tuple, float] = {}
    for offers, acts in rounds:
        for key, price in zip(products(offers, acts), acts.price_eur_per_kwh, strict=True):
            best[key] = max(best.get(key, -np.inf), float(price))
    return [(offers, replace(acts, price_eur_per_kwh=np.array(
        [best[key] for key in products(offers, acts)], dtype=float)))
        for offers, acts in rounds]


def clear_flex_worst_violation_first(offers: FlexOffers, capacity_kw: np.ndarray, dt_h: float,
                                     need: GridNeed, budgets=None, buyer: str = "DSO"
                                     ) -> tuple[Activations, dict]:
    """Serve each interval's worst violation in turn from the offers with the lowest cost per unit
    of grid effect (pay-as-bid), until the linearised limits hold or the book is empty. Offers
    with a minimum acceptance quantity or a price curve are left out (greedy steps cannot
    honour them)."""
    left = np.where((offers.min_kw > 1e-9) | offers.curved, 0.0, capacity_kw.astype(float))
    matrix = budgets[0].tocsc() if budgets is not None else None
    room = budgets[1].astype(float).copy() if budgets is not None else None
    rows_of_offer, dv, dl = need.effects(offers)
    lin, limits = need.linearization, need.limits
    chosen: dict[int, float] = {}
    unmet = {"voltage_pu": 0.0, "loading_percent": 0.0, "request_kwh": 0.0}
    for r, t in enumerate(need.intervals):
        vm = lin.vm_pu[r, need.monitored].copy()
        loading = lin.loading_percent[r].copy()
        book = np.flatnonzero((rows_of_offer == r) & (left > 1e-9))
        lo = limits.vm_min_pu + need.voltage_margin_pu[r, need.monitored]
        hi = limits.vm_max_pu - need.voltage_margin_pu[r, need.monitored]
        cap = limits.max_loading_percent - need.loading_margin_percent[r]
        for _ in range(4 * len(book) + 8):
            over_v = np.maximum(vm - hi, 0) + np.maximum(lo - vm, 0)
            over_l = np.maximum(loading - cap, 0)
            if over_v.max(initial=0) <= 1e-9 and over_l.max(initial=0) <= 1e-9:
                break
            if over_v.max(initial=0) * 1e3 >= over_l.max(initial=0):
                m = int(np.argmax(over_v))
                wanted = -1.0 if vm[m] > hi[m] else 1.0
                effect = dv[book, m] * wanted
                excess = over_v[m]
            else:
                m = int(np.argmax(over_l))
                effect = -dl[book, m]
                excess = over_l[m]
            helpful = effect > 1e-12
            if not helpful.any():
                break
            cost = np.where(helpful, offers.price_eur_per_kwh[book] / np.maximum(effect, 1e-12),
                            np.inf)
            j = book[int(np.argmin(cost))]
            kw = min(left[j], excess / effect[int(np.argmin(cost))])
            if matrix is not None and room is not None:
                column = matrix[:, j].toarray().ravel()
                binding = column > 1e-12
                if binding.any():
                    kw = min(kw, float((room[binding] / column[binding]).min()))
                room -= column * kw
            if kw <= 1e-9:
                left[j] = 0.0
                book = book[left[book] > 1e-9]
                continue
            left[j] -= kw
            chosen[j] = chosen.get(j, 0.0) + kw
            vm += dv[j] * kw
            loading += dl[j] * kw
            book = book[left[book] > 1e-9]
        unmet["voltage_pu"] = max(unmet["voltage_pu"], float(
            (np.maximum(vm - hi, 0) + np.maximum(lo - vm, 0)).max(initial=0)))
        unmet["loading_percent"] = max(unmet["loading_percent"], float(
            np.maximum(loading - cap, 0).max(initial=0)))
    used = np.array(sorted(chosen), dtype=int)
    kw = np.array([chosen[j] for j in used])
    return _assign_buyers(offers, used, kw, offers.price_eur_per_kwh[used], need, None,
                          buyer), unmet


def clear_requests_merit_order(offers: FlexOffers, capacity_kw: np.ndarray,
                               requests: FlexRequests, pricing: str = "pay-as-bid",
                               guard: GridNeed | None = None, budgets=None) -> Activations:
    """A central (TSO) market: each request takes the cheapest matching offers in price order;
    with ``guard``, an offer whose activation would push a DSO limit beyond its bound (by the
    sensitivities at the current schedule) is rejected, however cheap (SmartNet's rule that
    flexibility helping the TSO may not harm the distribution grid). Offers with a minimum
    acceptance quantity or a price curve are left out (the merit order takes any part of an
    offer at one price)."""
    left = np.where((offers.min_kw > 1e-9) | offers.curved, 0.0, capacity_kw.astype(float))
    matrix = budgets[0].tocsc() if budgets is not None else None
    room = budgets[1].astype(float).copy() if budgets is not None else None
    picks: list[tuple[int, float, int]] = []
    if guard is not None:
        rows_of_offer, dv, dl = guard.effects(offers)
        state_v = {r: guard.linearization.vm_pu[r, guard.monitored].copy()
                   for r in range(len(guard.intervals))}
        state_l = {r: guard.linearization.loading_percent[r].copy()
                   for r in range(len(guard.intervals))}
    for q in range(len(requests)):
        match = np.flatnonzero((offers.interval == requests.interval[q])
                               & (offers.direction == requests.direction[q])
                               & requests.area[q, offers.bus]
                               & (offers.price_eur_per_kwh <= requests.max_price_eur_per_kwh[q])
                               & (left > 1e-9))
        need_kw = requests.kw[q]
        for j in match[np.argsort(offers.price_eur_per_kwh[match], kind="stable")]:
            if need_kw <= 1e-9:
                break
            kw = min(left[j], need_kw)
            if matrix is not None and room is not None:
                column = matrix[:, j].toarray().ravel()
                binding = column > 1e-12
                if binding.any():
                    kw = min(kw, float((room[binding] / column[binding]).min()))
                if kw <= 1e-9:
                    continue
            if guard is not None and rows_of_offer[j] >= 0:
                r = rows_of_offer[j]
                lim = guard.limits
                vm_new = state_v[r] + dv[j] * kw
                l_new = state_l[r] + dl[j] * kw
                worse_v = ((vm_new > lim.vm_max_pu) & (dv[j] > 0)) | (
                    (vm_new < lim.vm_min_pu) & (dv[j] < 0))
                worse_l = (l_new > lim.max_loading_percent) & (dl[j] > 0)
                if worse_v.any() or worse_l.any():
                    continue  # rejected: it would harm the distribution grid
                state_v[r], state_l[r] = vm_new, l_new
            if matrix is not None:
                room -= matrix[:, j].toarray().ravel() * kw
            left[j] -= kw
            need_kw -= kw
            picks.append((int(j), kw, q))
    if not picks:
        return Activations.empty()
    used = np.array([p[0] for p in picks])
    kw = np.array([p[1] for p in picks])
    req = np.array([p[2] for p in picks])
    price = offers.price_eur_per_kwh[used]
    if pricing == "pay-as-clear":
        # Uniform price per request: the most expensive accepted offer.
        clearing = {q: price[req == q].max() for q in np.unique(req)}
        price = np.array([clearing[q] for q in req])
    return Activations(offer=used, kw=kw, price_eur_per_kwh=price,
                       buyer=requests.buyer[req].astype(str),
                       service=requests.service[req].astype(str))
