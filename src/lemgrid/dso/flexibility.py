"""Flexibility offers, requests and activations, and what an activation does to the assets.

Directions: ``up`` (+1) means more net injection at the bus (a battery discharges more or charges
less, an EV or shiftable load draws less now); ``down`` (-1) means less net injection (a battery
charges more, PV is curtailed, an EV draws more now). Every offer belongs to one *resource* (an
asset) and one interval; activations change the asset's schedule physically, as the asset's kind
declares (:mod:`lemgrid.assets.kinds`: ``offers``, ``budgets``, ``apply``):

- batteries (:mod:`lemgrid.assets.battery`): the output changes at the interval and the state of
  charge of every later interval of the session moves by the energy that change costs or saves
  (offers are sized so that it stays within its limits);
- EVs and shiftable loads (:mod:`lemgrid.assets.windows`): energy not drawn now is drawn later in
  the same window (rebound, at the first intervals with spare power), energy drawn now is not
  drawn later;
- heat pumps (:mod:`lemgrid.assets.heat_pump`): within the comfort band, with rebound;
- PV (the participants' generation, not a kind): curtailed for the interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from lemgrid.assets.battery import battery_room, soc_change_kwh  # noqa: F401 (re-exported)
from lemgrid.assets.kinds import KindOffers, asset_kind, kind_for_type, kind_types
from lemgrid.assets.tables import take_rows
from lemgrid.errors import InputError

UP, DOWN = 1, -1


@dataclass(frozen=True, eq=False)
class FlexOffers:
    """Offers of flexibility, one row per (resource, interval, direction).

    Attributes
    ----------
    provider : ndarray of str
        Who sells: the participant, or the aggregator representing it.
    participant : ndarray of int
        Owner of the resource.
    kind : ndarray of str
        'pv' or an offer label of an asset kind ('battery', 'ev', 'flexible_load',
        'heat_pump', ...).
    asset : ndarray of int
        Row of the asset in its kind's table (the participant for PV).
    bus : ndarray of int
    interval : ndarray of int
    direction : ndarray of int
        +1 up, -1 down.
    kw : ndarray
        Most that can be activated [kW] (>= 0).
    price_eur_per_kwh : ndarray
        Utilisation price [EUR/kWh].
    availability_eur_per_kw_h : ndarray
        Reservation price per kW and hour [EUR/(kW h)].
    window_start, window_stop : ndarray of int
        Availability window [start, stop) of the resource (intervals).
    baseline_kw : ndarray
        The resource's scheduled power at the interval without activation (battery output,
        session draw, or PV feed-in) [kW]: delivery is measured against it.
    min_kw : ndarray
        Minimum acceptance quantity [kW] (0: any part): an offer is activated at least this
        much or not at all (UMEI's ``minimumAcceptanceQuantity``; honoured by
        :func:`lemgrid.dso.flex_market.clear_optimal`, left out by the other clearings).
    price_curve : ndarray of object
        None (every kW at ``price_eur_per_kwh``), or the offer's marginal price as it is
        activated further: an (m, 2) array of (kW, EUR/kWh) points, linear between them, from
        (0, ``price_eur_per_kwh``) to (``kw``, the price of its last kW), prices not falling
        (UMEI's interpolated orders; honoured by
        :func:`lemgrid.dso.flex_market.clear_optimal`, left out by the other clearings).
    """

    provider: np.ndarray
    participant: np.ndarray
    kind: np.ndarray
    asset: np.ndarray
    bus: np.ndarray
    interval: np.ndarray
    direction: np.ndarray
    kw: np.ndarray
    price_eur_per_kwh: np.ndarray
    availability_eur_per_kw_h: np.ndarray
    window_start: np.ndarray
    window_stop: np.ndarray
    baseline_kw: np.ndarray = None  # type: ignore[assignment]
    min_kw: np.ndarray = None  # type: ignore[assignment]
    price_curve: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.baseline_kw is None:
            object.__setattr__(self, "baseline_kw", np.full(len(self.kw), np.nan))
        if self.min_kw is None:
            object.__setattr__(self, "min_kw", np.zeros(len(self.kw)))
        if self.price_curve is None:
            object.__setattr__(self, "price_curve", np.full(len(self.kw), None, dtype=object))

    @property
    def curved(self) -> np.ndarray:
        """Offers whose price rises as they are activated further (bool)."""
        return np.array([c is not None for c in self.price_curve], dtype=bool)

    def __len__(self) -> int:
        return len(self.kw)

    @property
    def resource(self) -> np.ndarray:
        """Resource key: kind and asset index (one physical capacity)."""
        return np.char.add(np.char.add(self.kind.astype(str), ":"), self.asset.astype(str))

    def take(self, keep: np.ndarray) -> FlexOffers:
        return take_rows(self, keep)

    @classmethod
    def concat(cls, parts: list[FlexOffers]) -> FlexOffers:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})

    def validate(self, n_bus: int, where: str = "flexibility offers") -> None:
        """Refuse NaN or negative kW, unknown buses and offers outside their window."""
        for name in ("kw", "price_eur_per_kwh", "availability_eur_per_kw_h", "min_kw"):
            values = getattr(self, name)
            if not np.isfinite(values).all():
                k = int(np.flatnonzero(~np.isfinite(values))[0])
                raise InputError(f"{where}: offer {k} of {self.provider[k]!s}: {name} is not a "
                                 "finite number")
        for name in ("kw", "min_kw"):
            values = getattr(self, name)
            if (values < 0).any():
                k = int(np.flatnonzero(values < 0)[0])
                raise InputError(f"{where}: offer {k} of {self.provider[k]!s}: {name} must be "
                                 f">= 0, got {values[k]}")
        bad_bus = (self.bus < 0) | (self.bus >= n_bus)
        if bad_bus.any():
            k = int(np.flatnonzero(bad_bus)[0])
            raise InputError(f"{where}: offer {k} of {self.provider[k]!s}: unknown bus position "
                             f"{self.bus[k]}")
        outside = (self.interval < self.window_start) | (self.interval >= self.window_stop)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"{where}: offer {k} of {self.provider[k]!s} for interval {self.interval[k]} is "
                f"outside its availability window [{self.window_start[k]}, "
                f"{self.window_stop[k]})")
        if not np.isin(self.direction, (UP, DOWN)).all():
            raise InputError(f"{where}: direction must be up (+1) or down (-1)")
        for j in np.flatnonzero(self.curved):
            _check_curve(self.price_curve[j], self.kw[j], self.price_eur_per_kwh[j],
                         f"{where}: offer {j} of {self.provider[j]!s}: price_curve")


def _check_curve(curve: np.ndarray, kw: float, price: float, where: str) -> None:
    curve = np.asarray(curve, float)
    if curve.ndim != 2 or curve.shape[1] != 2 or len(curve) < 2:
        raise InputError(f"{where}: (kW, EUR/kWh) points, at least two")
    if not np.isfinite(curve).all():
        raise InputError(f"{where}: not finite numbers")
    if curve[0, 0] != 0 or curve[0, 1] != price:
        raise InputError(f"{where}: must start at (0 kW, the offer's price {price})")
    if abs(curve[-1, 0] - kw) > 1e-9:
        raise InputError(f"{where}: must end at the offer's kw ({kw}), not {curve[-1, 0]}")
    if (np.diff(curve[:, 0]) <= 0).any():
        raise InputError(f"{where}: the kW of its points must rise")
    if (np.diff(curve[:, 1]) < 0).any():
        raise InputError(f"{where}: prices may not fall as more is activated (a cost that "
                         "is not convex cannot be cleared at least cost)")


def activation_money_eur(kw, price_eur_per_kwh, shortfall_kw, penalty_eur_per_kwh: float,
                         dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """What activations earn and owe once their delivery is known: the utilisation price on
    the power delivered, the non-delivery penalty on the shortfall.

    Parameters
    ----------
    kw : array_like
        Activated power [kW].
    price_eur_per_kwh : array_like
        Utilisation price [EUR/kWh].
    shortfall_kw : array_like
        Power not delivered [kW] (clipped to [0, kw]).
    penalty_eur_per_kwh : float
        Non-delivery penalty [EUR/kWh] (``dso.flexibility.non_delivery_penalty_eur_per_kwh``).
    dt_h : float
        Interval length [h].

    Returns
    -------
    utilisation_eur, penalty_eur : ndarray
    """
    kw = np.asarray(kw, float)
    short = np.clip(np.asarray(shortfall_kw, float), 0.0, kw)
    return (np.asarray(price_eur_per_kwh, float) * (kw - short) * dt_h,
            penalty_eur_per_kwh * short * dt_h)


def price_curves(curves) -> np.ndarray:
    """A :attr:`FlexOffers.price_curve` column from a sequence of None or (m, 2) point lists
    [kW, EUR/kWh] (one object per offer, whatever the curves' shapes)."""
    column = np.empty(len(curves), dtype=object)
    column[:] = [None if c is None else np.asarray(c, float) for c in curves]
    return column


def curve_price_eur_per_kwh(curve: np.ndarray, kw) -> np.ndarray:
    """The marginal price [EUR/kWh] of a price curve (:attr:`FlexOffers.price_curve`) at
    ``kw`` activated."""
    return np.interp(kw, curve[:, 0], curve[:, 1])


def curve_cost_eur_per_h(curve: np.ndarray, from_kw: float, to_kw: float) -> float:
    """What activating an offer from ``from_kw`` to ``to_kw`` costs by its price curve: the
    integral of the marginal price [EUR/h; times the interval's hours: EUR]."""
    inside = curve[(curve[:, 0] > from_kw) & (curve[:, 0] < to_kw), 0]
    x = np.concatenate([[from_kw], inside, [to_kw]])
    y = curve_price_eur_per_kwh(curve, x)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


@dataclass(frozen=True, eq=False)
class FlexRequests:
    """Explicit requests for flexibility (TSO balancing, a DSO's planned congestion product).

    Attributes
    ----------
    buyer : ndarray of str
        'DSO', 'TSO' or 'BRP'.
    service : ndarray of str
        'CM' (congestion management), 'VM' (voltage management), 'LLR' (loss reduction) or
        'balancing'.
    interval : ndarray of int
    area : ndarray of bool, shape (R, n_bus)
        Buses whose offers count for the request.
    direction : ndarray of int
    kw : ndarray
        Requested power [kW] (> 0).
    max_price_eur_per_kwh : ndarray
    """

    buyer: np.ndarray
    service: np.ndarray
    interval: np.ndarray
    area: np.ndarray
    direction: np.ndarray
    kw: np.ndarray
    max_price_eur_per_kwh: np.ndarray

    def __len__(self) -> int:
        return len(self.kw)

    def take(self, keep: np.ndarray) -> FlexRequests:
        return take_rows(self, keep)

    @classmethod
    def empty(cls, n_bus: int) -> FlexRequests:
        return cls(np.array([], str), np.array([], str), np.array([], int),
                   np.zeros((0, n_bus), bool), np.array([], int), np.array([]), np.array([]))

    def validate(self, where: str = "flexibility requests") -> None:
        if (self.kw <= 0).any() or not np.isfinite(self.kw).all():
            k = int(np.flatnonzero(~(self.kw > 0))[0])
            raise InputError(f"{where}: request {k} of the {self.buyer[k]}: kw must be > 0, got "
                             f"{self.kw[k]}")
        if not self.area.any(axis=1).all():
            k = int(np.flatnonzero(~self.area.any(axis=1))[0])
            raise InputError(f"{where}: request {k} of the {self.buyer[k]} names no bus of the "
                             "grid")


@dataclass(frozen=True, eq=False)
class Activations:
    """Activated offers.

    Attributes
    ----------
    offer : ndarray of int
        Row of the offer in the offers table it was cleared from.
    kw : ndarray
        Activated power [kW].
    price_eur_per_kwh : ndarray
        Price paid per kWh activated (the offer's price for pay-as-bid; its marginal value for
        pay-as-clear).
    buyer : ndarray of str
    service : ndarray of str
    """

    offer: np.ndarray
    kw: np.ndarray
    price_eur_per_kwh: np.ndarray
    buyer: np.ndarray
    service: np.ndarray

    def __len__(self) -> int:
        return len(self.kw)

    @classmethod
    def empty(cls) -> Activations:
        return cls(np.array([], int), np.array([]), np.array([]), np.array([], str),
                   np.array([], str))

    @classmethod
    def concat(cls, parts: list[Activations]) -> Activations:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)}) if parts else cls.empty()


class ActivationRegistry:
    """What every resource has sold per interval and direction, across the markets of a session.

    The rule of GOPACS and of SmartNet's coordination schemes: a resource is never activated twice
    for the same interval and capacity, whichever market (DSO, TSO, direct control) activates it.

    The registry books, per (resource, interval, direction), the capacity the resource offered
    when it was first activated there and how much of it has been activated since. An offer table
    built later may or may not have those activations carried out in its schedule (the DSO builds
    offers from the schedule with every activation applied, so their ``kw`` already is what is
    left; a forwarded book is the same table): what is left of an offer is therefore the smaller
    of its ``kw`` and the booked capacity minus what was activated, never the activated part
    subtracted from an offer that no longer contains it. A resource activated in one direction
    offers nothing in the other in that interval (a counter-activation would undo what another
    buyer paid for).
    """

    def __init__(self) -> None:
        self.capacity_kw: dict[tuple[str, int, int], float] = {}
        self.used: dict[tuple[str, int, int], float] = {}

    @staticmethod
    def _keys(offers: FlexOffers) -> list[tuple[str, int, int]]:
        return [(str(r), int(t), int(d)) for r, t, d in
                zip(offers.resource, offers.interval, offers.direction, strict=True)]

    def remaining(self, offers: FlexOffers) -> np.ndarray:
        """Capacity of each offer not yet activated [kW]."""
        left = offers.kw.astype(float).copy()
        for k, key in enumerate(self._keys(offers)):
            if self.used.get((key[0], key[1], -key[2]), 0.0) > 1e-9:
                left[k] = 0.0
            elif key in self.used:
                left[k] = min(left[k], self.capacity_kw[key] - self.used[key])
        return np.maximum(left, 0.0)

    def record(self, offers: FlexOffers, activations: Activations) -> None:
        """Book activations cleared from ``offers``; refuses any beyond what is left of its
        offer, or against an activation in the other direction."""
        keys = self._keys(offers)
        left = self.remaining(offers)
        taken = np.zeros(len(offers))
        np.add.at(taken, activations.offer, activations.kw)
        for k in np.flatnonzero(taken > 0):
            key = keys[k]
            if taken[k] > left[k] + 1e-6:
                raise InputError(
                    f"flexibility: {key[0]} would be activated twice in interval {key[1]} "
                    f"({taken[k]:.3f} kW asked, {left[k]:.3f} kW of its offer left)")
            self.capacity_kw.setdefault(key, float(offers.kw[k]))
            self.used[key] = self.used.get(key, 0.0) + float(taken[k])


# --- offers from a schedule, and activations applied to it -----------------------------------

@dataclass(frozen=True)
class OfferPrices:
    """Utilisation prices [EUR/kWh] and the availability price [EUR/(kW h)].

    ``pv``: curtailment; ``by_kind``: prices per offer label of an asset kind (default: the
    kind's ``flex_prices_eur_per_kwh`` for the label, else its ``flex_price_eur_per_kwh``);
    ``others``: one price for every asset kind instead (regulated direct control)."""

    pv: float = 0.12
    availability_eur_per_kw_h: float = 0.0
    by_kind: dict[str, float] = field(default_factory=dict)
    others: float | None = None

    def of_kind(self, label: str) -> float:
        """Price of flexibility offered under ``label`` [EUR/kWh]."""
        if self.others is not None:
            return self.others
        if label in self.by_kind:
            return self.by_kind[label]
        kind = kind_for_type(label)
        return float(getattr(kind, "flex_prices_eur_per_kwh", {}).get(
            label, kind.flex_price_eur_per_kwh))


def offers_from_plan(plan, pv_kw: np.ndarray, participant_bus: np.ndarray,
                     providers: np.ndarray, dt_h: float, prices: OfferPrices,
                     intervals: np.ndarray | None = None, window: tuple[int, int] | None = None,
                     kinds: dict | None = None) -> FlexOffers:
    """Offers of every flexible asset at the given intervals, from its current schedule.

    Parameters
    ----------
    plan : AssetPlan
        Current schedule of the session (every kind's plan, curtailment).
    pv_kw : ndarray (Td, N)
        PV available (forecast or realised) [kW].
    participant_bus : ndarray of int (N,)
    providers : ndarray of str (N,)
        Who offers each participant's flexibility (itself or its aggregator).
    dt_h : float
    prices : OfferPrices
    intervals : ndarray of int, optional
        Intervals to offer for (default: all).
    window : (start, stop), optional
        Availability window of all offers (default: the whole session).
    kinds : dict[str, column table], optional
        The session's assets by kind (their offers as each kind declares).
    """
    n_t = plan.curtailment_kw.shape[0]
    intervals = np.arange(n_t) if intervals is None else np.asarray(intervals, int)
    window = (0, n_t) if window is None else window
    rows: list[dict[str, np.ndarray]] = []

    def add(kind, asset, participant, t, direction, kw, price, baseline):
        keep = kw > 1e-6
        if keep.any():
            rows.append(dict(kind=np.asarray(kind)[keep], asset=asset[keep],
                             participant=participant[keep], interval=t[keep],
                             direction=np.asarray(direction)[keep], kw=kw[keep],
                             price=np.asarray(price, float)[keep], baseline=baseline[keep]))

    # Asset kinds: as they declare (in registration order: batteries, EVs and shiftable loads,
    # heat pumps, ...).
    for name, table in (kinds or {}).items():
        if name not in plan.kinds or not len(intervals) or not len(table):
            continue
        o = asset_kind(name).offers(table, plan.kinds[name], intervals, dt_h)
        if not len(o):
            continue
        label = np.full(len(o), name) if o.label is None else o.label.astype(str)
        price = np.array([prices.of_kind(str(x)) for x in label]) if len(set(label)) > 1 \
            else np.full(len(o), prices.of_kind(str(label[0])))
        add(label, o.asset, table.owner[o.asset], o.interval, o.direction, o.kw, price,
            o.baseline_kw)
    # PV: curtail what is not curtailed yet.
    if len(intervals):
        n = pv_kw.shape[1]
        tt, nn = np.meshgrid(intervals, np.arange(n), indexing="ij")
        tt, nn = tt.ravel(), nn.ravel()
        room = np.maximum(pv_kw - plan.curtailment_kw, 0.0)
        add(np.full(len(tt), "pv"), nn, nn, tt, np.full(len(tt), DOWN), room[tt, nn],
            np.full(len(tt), prices.pv), room[tt, nn])

    if not rows:
        empty_i, empty_f, empty_s = np.array([], int), np.array([]), np.array([], str)
        return FlexOffers(empty_s, empty_i, empty_s, empty_i, empty_i, empty_i, empty_i, empty_f,
                          empty_f, empty_f, empty_i, empty_i)
    cat = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    m = len(cat["kw"])
    return FlexOffers(
        provider=providers[cat["participant"]], participant=cat["participant"],
        kind=cat["kind"], asset=cat["asset"], bus=participant_bus[cat["participant"]],
        interval=cat["interval"], direction=cat["direction"], kw=cat["kw"],
        price_eur_per_kwh=cat["price"],
        availability_eur_per_kw_h=np.full(m, prices.availability_eur_per_kw_h),
        window_start=np.full(m, window[0]), window_stop=np.full(m, window[1]),
        baseline_kw=cat["baseline"])


def energy_budgets(plan, offers: FlexOffers, dt_h: float, kinds: dict | None = None):
    """Constraints linking activations of the same asset at different intervals.

    Each offer is sized on its own; together they must respect what each asset's kind declares
    (``budgets``): a battery's activations may not push any later state of charge out of its
    limits, an EV's or shiftable load's deferrals may not exceed its spare power in the window
    (nor its advances the energy it still draws), a heat pump's store stays in its band.

    Returns
    -------
    (A, upper) : scipy.sparse.csr_matrix (R, K), ndarray (R,)
        ``A @ activated_kw <= upper``.
    """
    import scipy.sparse as sp

    rows, cols, vals, upper = [], [], [], []
    r = 0
    for name, table in (kinds or {}).items():
        mine = np.flatnonzero(np.isin(offers.kind, kind_types(asset_kind(name))))
        if not len(mine) or name not in plan.kinds:
            continue
        view = KindOffers(offers.asset[mine], offers.interval[mine], offers.direction[mine],
                          offers.kw[mine], offers.baseline_kw[mine], offers.kind[mine])
        for positions, coefs, bound in asset_kind(name).budgets(table, plan.kinds[name], view,
                                                                 dt_h):
            rows += [r] * len(positions)
            cols += mine[positions].tolist()
            vals += np.asarray(coefs, float).tolist()
            upper.append(float(bound))
            r += 1
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(r, len(offers)))
    return matrix, np.array(upper)


def apply_activations(plan, offers: FlexOffers, activations: Activations, dt_h: float,
                      kinds: dict | None = None):
    """A new AssetPlan with the activations carried out (see the module docstring);
    ``kinds``: the session's assets by kind."""
    from dataclasses import replace

    kind_plans = dict(plan.kinds)
    for name, table in (kinds or {}).items():
        mine = np.isin(offers.kind[activations.offer], kind_types(asset_kind(name)))
        if mine.any():
            k = activations.offer[mine]
            kind_plans[name] = asset_kind(name).apply(
                table, kind_plans[name], offers.asset[k], offers.interval[k],
                offers.direction[k] * activations.kw[mine], dt_h)
    curtailment = plan.curtailment_kw.copy()
    pv = offers.kind[activations.offer] == "pv"
    for k, kw in zip(activations.offer[pv], activations.kw[pv], strict=True):
        curtailment[int(offers.interval[k]), int(offers.asset[k])] += kw
    unknown = ~pv & ~np.isin(offers.kind[activations.offer],
                             [t for name in (kinds or {}) for t in kind_types(asset_kind(name))])
    if unknown.any():
        label = offers.kind[activations.offer][unknown][0]
        raise InputError(f"flexibility: an activation of {label!s} offers, whose kind has no "
                         "assets in this session")
    return replace(plan, curtailment_kw=curtailment, kinds=kind_plans)
