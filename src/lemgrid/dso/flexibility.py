"""Flexibility offers, requests and activations, and what an activation does to the assets.

Directions: ``up`` (+1) means more net injection at the bus (a battery discharges more or charges
less, an EV or shiftable load draws less now); ``down`` (-1) means less net injection (a battery
charges more, PV is curtailed, an EV draws more now). Every offer belongs to one *resource* (an
asset) and one interval; activations change the asset's schedule physically:

- batteries: the output changes at the interval and the state of charge of every later interval
  of the session moves by the energy that change costs or saves (offers are sized so that it stays
  within its limits);
- EVs and shiftable loads: energy not drawn now is drawn later in the same window (rebound, at the
  first intervals with spare power), energy drawn now is not drawn later;
- PV: curtailed for the interval;
- assets of registered kinds (:mod:`lemgrid.assets.kinds`, e.g. heat pumps): as their kind
  declares (``offers``, ``budgets``, ``apply``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from lemgrid.assets.kinds import asset_kind
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
        'battery', 'pv', 'ev', 'flexible_load' or a registered asset kind (e.g. 'heat_pump').
    asset : ndarray of int
        Index of the battery / session (or the participant for PV).
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

    def __post_init__(self) -> None:
        if self.baseline_kw is None:
            object.__setattr__(self, "baseline_kw", np.full(len(self.kw), np.nan))

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
        for name in ("kw", "price_eur_per_kwh", "availability_eur_per_kw_h"):
            values = getattr(self, name)
            if not np.isfinite(values).all():
                k = int(np.flatnonzero(~np.isfinite(values))[0])
                raise InputError(f"{where}: offer {k} of {self.provider[k]!s}: {name} is not a "
                                 "finite number")
        if (self.kw < 0).any():
            k = int(np.flatnonzero(self.kw < 0)[0])
            raise InputError(f"{where}: offer {k} of {self.provider[k]!s}: kw must be >= 0, "
                             f"got {self.kw[k]}")
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
            raise InputError(f"{where}: request {k} of the {self.buyer[k]} names no bus of the grid")


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

def _soc_change(output_kw: np.ndarray, eta_c: np.ndarray, eta_d: np.ndarray, dt_h: float
                ) -> np.ndarray:
    """Change of stored energy [kWh] caused by a battery output (discharge positive) [kW]."""
    return np.where(output_kw > 0, -output_kw * dt_h / eta_d, -output_kw * eta_c * dt_h)


def battery_room(output_kw, soc_after_min_kwh, soc_after_max_kwh, batteries, dt_h: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Most a battery can move up / down at an interval [kW] (arrays (T, B)).

    ``soc_after_min_kwh``/``max``: the lowest / highest state of charge from that interval to the
    end of the session; the change must keep all of them within the battery's limits.
    """
    b = batteries
    e_min, e_max = b.soc_min * b.capacity_kwh, b.soc_max * b.capacity_kwh
    budget_up = np.maximum(soc_after_min_kwh - e_min, 0.0)  # energy we may take out
    budget_down = np.maximum(e_max - soc_after_max_kwh, 0.0)  # energy we may put in
    # Up: first stop charging (saves eta_c per kWh), then discharge (costs 1/eta_d per kWh).
    charging = np.maximum(-output_kw, 0.0)
    stop_charge = np.minimum(charging, budget_up / (b.eta_charge * dt_h))
    rest = budget_up - stop_charge * b.eta_charge * dt_h
    discharge_more = np.where(stop_charge >= charging - 1e-12,
                              np.minimum(b.power_kw - np.maximum(output_kw, 0.0),
                                         rest * b.eta_discharge / dt_h), 0.0)
    up = stop_charge + np.maximum(discharge_more, 0.0)
    # Down: first stop discharging (keeps 1/eta_d per kWh), then charge (eta_c per kWh).
    discharging = np.maximum(output_kw, 0.0)
    stop_discharge = np.minimum(discharging, budget_down * b.eta_discharge / dt_h)
    rest = budget_down - stop_discharge * dt_h / b.eta_discharge
    charge_more = np.where(stop_discharge >= discharging - 1e-12,
                           np.minimum(b.power_kw - charging, rest / (b.eta_charge * dt_h)), 0.0)
    down = stop_discharge + np.maximum(charge_more, 0.0)
    return up, down


@dataclass(frozen=True)
class OfferPrices:
    """Utilisation prices per kind [EUR/kWh] and the availability price [EUR/(kW h)].

    ``by_kind``: prices of registered kinds (default: the kind's ``flex_price_eur_per_kwh``);
    ``others``: one price for every registered kind instead (regulated direct control)."""

    battery: float = 0.05
    pv: float = 0.12
    ev: float = 0.03
    flexible_load: float = 0.03
    availability_eur_per_kw_h: float = 0.0
    by_kind: dict[str, float] = field(default_factory=dict)
    others: float | None = None

    def of_kind(self, name: str) -> float:
        """Price of a registered kind's flexibility [EUR/kWh]."""
        if self.others is not None:
            return self.others
        return self.by_kind.get(name, asset_kind(name).flex_price_eur_per_kwh)


def offers_from_plan(plan, batteries, windows, pv_kw: np.ndarray, participant_bus: np.ndarray,
                     providers: np.ndarray, dt_h: float, prices: OfferPrices,
                     intervals: np.ndarray | None = None, window: tuple[int, int] | None = None,
                     kinds: dict | None = None) -> FlexOffers:
    """Offers of every flexible asset at the given intervals, from its current schedule.

    Parameters
    ----------
    plan : AssetPlan
        Current schedule of the session (battery output/state, session power, curtailment).
    batteries, windows : Batteries, EnergyWindows
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
        The session's assets of registered kinds (their offers as the kind declares).
    """
    n_t = plan.curtailment_kw.shape[0]
    intervals = np.arange(n_t) if intervals is None else np.asarray(intervals, int)
    window = (0, n_t) if window is None else window
    rows: list[dict[str, np.ndarray]] = []

    def add(kind, asset, participant, t, direction, kw, price, baseline):
        keep = kw > 1e-6
        if keep.any():
            rows.append(dict(kind=np.full(keep.sum(), kind), asset=asset[keep],
                             participant=participant[keep], interval=t[keep],
                             direction=np.full(keep.sum(), direction), kw=kw[keep],
                             price=np.full(keep.sum(), price), baseline=baseline[keep]))

    # Batteries: room up and down that keeps every later state of charge within limits.
    if len(batteries) and len(intervals):
        soc = plan.soc_kwh
        later_min = np.minimum.accumulate(soc[::-1], axis=0)[::-1]
        later_max = np.maximum.accumulate(soc[::-1], axis=0)[::-1]
        up, down = battery_room(plan.battery_kw, later_min, later_max, batteries, dt_h)
        tt, bb = np.meshgrid(intervals, np.arange(len(batteries)), indexing="ij")
        tt, bb = tt.ravel(), bb.ravel()
        owner = batteries.owner[bb]
        base = plan.battery_kw[tt, bb]
        add("battery", bb, owner, tt, UP, up[tt, bb], prices.battery, base)
        add("battery", bb, owner, tt, DOWN, down[tt, bb], prices.battery, base)
    # PV: curtail what is not curtailed yet.
    if len(intervals):
        n = pv_kw.shape[1]
        tt, nn = np.meshgrid(intervals, np.arange(n), indexing="ij")
        tt, nn = tt.ravel(), nn.ravel()
        room = np.maximum(pv_kw - plan.curtailment_kw, 0.0)
        add("pv", nn, nn, tt, DOWN, room[tt, nn], prices.pv, room[tt, nn])
    # Windows: draw less now (rebound later) or more now (less later), within the window.
    for k in range(len(windows)):
        start, stop = int(windows.start[k]), int(windows.stop[k])
        kw = plan.window_kw[:, k]
        power = windows.power_kw[k]
        t = intervals[(intervals >= start) & (intervals < stop)]
        if not len(t):
            continue
        spare_after = np.array([(power - kw[tk + 1:stop]).clip(min=0).sum() for tk in t])
        drawn_after = np.array([kw[tk + 1:stop].sum() for tk in t])
        kind = str(windows.kind[k])
        price = prices.ev if kind == "ev" else prices.flexible_load
        owner = np.full(len(t), int(windows.owner[k]))
        asset = np.full(len(t), k)
        add(kind, asset, owner, t, UP, np.minimum(kw[t], spare_after), price, kw[t])
        add(kind, asset, owner, t, DOWN, np.minimum(power - kw[t], drawn_after), price, kw[t])
    # Registered kinds: as they declare.
    for name, table in (kinds or {}).items():
        if name not in plan.kinds or not len(intervals):
            continue
        o = asset_kind(name).offers(table, plan.kinds[name], intervals, dt_h)
        for direction in (UP, DOWN):
            mine = o.direction == direction
            add(name, o.asset[mine], table.owner[o.asset[mine]], o.interval[mine], direction,
                o.kw[mine], prices.of_kind(name), o.baseline_kw[mine])

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


def energy_budgets(plan, offers: FlexOffers, batteries, windows, dt_h: float,
                   kinds: dict | None = None):
    """Constraints linking activations of the same asset at different intervals.

    Each offer is sized on its own; together, a battery's activations may not push any later
    state of charge out of its limits (counted conservatively with the worse efficiency of each
    direction), and an EV's or shiftable load's deferrals may not exceed its spare power in the
    window (nor its advances the energy it still draws). Registered kinds declare their own
    rows (``kinds``: the session's tables).

    Returns
    -------
    (A, upper) : scipy.sparse.csr_matrix (R, K), ndarray (R,)
        ``A @ activated_kw <= upper``.
    """
    import scipy.sparse as sp

    rows, cols, vals, upper = [], [], [], []
    r = 0
    b = batteries
    n_t = plan.soc_kwh.shape[0]
    for k in range(len(b)):
        mine = np.flatnonzero((offers.kind == "battery") & (offers.asset == k))
        if not len(mine):
            continue
        up = offers.direction[mine] == UP
        # Energy change per kW: most for the upper limit, least for the lower one.
        rise = np.where(up, -b.eta_charge[k] * dt_h, dt_h / b.eta_discharge[k])
        fall = np.where(up, dt_h / b.eta_discharge[k], -b.eta_charge[k] * dt_h)
        e_max = b.soc_max[k] * b.capacity_kwh[k]
        e_min = b.soc_min[k] * b.capacity_kwh[k]
        for t in range(n_t):
            before = offers.interval[mine] <= t
            if not before.any():
                continue
            for coef, bound in ((rise, e_max - plan.soc_kwh[t, k]),
                                (fall, plan.soc_kwh[t, k] - e_min)):
                rows += [r] * int(before.sum())
                cols += mine[before].tolist()
                vals += coef[before].tolist()
                upper.append(max(bound, 0.0))
                r += 1
    for k in range(len(windows)):
        mine = np.flatnonzero((offers.kind == windows.kind[k]) & (offers.asset == k))
        if not len(mine):
            continue
        start, stop = int(windows.start[k]), int(windows.stop[k])
        kw = plan.window_kw[start:stop, k]
        for direction, bound in ((UP, (windows.power_kw[k] - kw).clip(min=0).sum()),
                                 (DOWN, kw.sum())):
            which = mine[offers.direction[mine] == direction]
            rows += [r] * len(which)
            cols += which.tolist()
            vals += [1.0] * len(which)
            upper.append(float(bound))
            r += 1
    from lemgrid.assets.kinds import KindOffers

    for name, table in (kinds or {}).items():
        mine = np.flatnonzero(offers.kind == name)
        if not len(mine) or name not in plan.kinds:
            continue
        view = KindOffers(offers.asset[mine], offers.interval[mine], offers.direction[mine],
                          offers.kw[mine], offers.baseline_kw[mine])
        for positions, coefs, bound in asset_kind(name).budgets(table, plan.kinds[name], view,
                                                                 dt_h):
            rows += [r] * len(positions)
            cols += mine[positions].tolist()
            vals += np.asarray(coefs, float).tolist()
            upper.append(float(bound))
            r += 1
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(r, len(offers)))
    return matrix, np.array(upper)


def apply_activations(plan, offers: FlexOffers, activations: Activations, batteries, windows,
                      dt_h: float, kinds: dict | None = None):
    """A new AssetPlan with the activations carried out (see the module docstring);
    ``kinds``: the session's tables of registered kinds."""
    from dataclasses import replace

    battery_kw = plan.battery_kw.copy()
    soc = plan.soc_kwh.copy()
    window_kw = plan.window_kw.copy()
    curtailment = plan.curtailment_kw.copy()
    b = batteries
    kind_plans = dict(plan.kinds)
    for name, table in (kinds or {}).items():
        mine = offers.kind[activations.offer] == name
        if mine.any():
            k = activations.offer[mine]
            kind_plans[name] = asset_kind(name).apply(
                table, kind_plans[name], offers.asset[k], offers.interval[k],
                offers.direction[k] * activations.kw[mine], dt_h)
    for k, kw in zip(activations.offer, activations.kw, strict=True):
        kind, asset, t = offers.kind[k], int(offers.asset[k]), int(offers.interval[k])
        if kind in kind_plans:
            continue
        delta = offers.direction[k] * kw
        if kind == "battery":
            old = battery_kw[t, asset]
            new = old + delta
            change = (_soc_change(np.array(new), b.eta_charge[asset], b.eta_discharge[asset], dt_h)
                      - _soc_change(np.array(old), b.eta_charge[asset], b.eta_discharge[asset],
                                    dt_h))
            battery_kw[t, asset] = new
            soc[t:, asset] += change
        elif kind == "pv":
            curtailment[t, asset] += kw
        else:
            stop = int(windows.stop[asset])
            power = windows.power_kw[asset]
            window_kw[t, asset] -= delta  # up: draw less now
            energy = delta  # kW-intervals to move to (up) or from (down) later intervals
            for tk in range(t + 1, stop):
                if abs(energy) < 1e-12:
                    break
                room = power - window_kw[tk, asset] if energy > 0 else window_kw[tk, asset]
                move = min(abs(energy), room)
                window_kw[tk, asset] += np.sign(energy) * move
                energy -= np.sign(energy) * move
    return replace(plan, battery_kw=battery_kw, soc_kwh=soc, window_kw=window_kw,
                   curtailment_kw=curtailment, kinds=kind_plans)
