"""The DSO at work in every session: traffic light, flexibility market, coordination with the TSO,
direct control, and the money that flexibility moves.

Per day-ahead session (one day):

1. **Traffic light, forecast.** AC power flow of the market's schedule on the DSO's view of the
   day (day-ahead forecasts; the realised profiles for intraday lead time). Intervals with a
   violation turn **amber**: the DSO opens its flexibility market for them. An interval whose
   power flow does not converge is a violation of its own; without an operating point it gets
   no linearised market (nor TSO activations).
2. **Flexibility market** (``lemgrid.dso.flex_market``) on offers made from the participants'
   current schedules; activations change those schedules; the AC power flow checks the result and
   the market runs again with re-linearised sensitivities and tighter margins until the
   violations are gone (or the book is empty).
3. **TSO-DSO coordination**: the TSO's (or a BRP's) requests are cleared after the DSO's market on
   the leftover offers (``local-first``), or together with the DSO's needs (``common``, each
   buyer paying for what it requested); no resource is ever activated twice
   (``ActivationRegistry``).
4. **Delivery.** Each activation is delivered with probability ``delivery_rate`` (else it is
   penalised and not paid). AC power flow of what is delivered with the realised profiles:
   intervals still violated turn **red**; with red control on, the DSO curtails and controls
   directly at a regulated price until the grid is within limits. Intervals without any
   violation stay **green**.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lemgrid.dso.flex_market import (
    GridNeed,
    clear_flex_worst_violation_first,
    clear_optimal,
    clear_requests_merit_order,
    one_price_per_product,
)
from lemgrid.dso.flexibility import (
    DOWN,
    UP,
    ActivationRegistry,
    Activations,
    FlexOffers,
    FlexRequests,
    OfferPrices,
    activation_money_eur,
    apply_activations,
    energy_budgets,
    offers_from_plan,
)
from lemgrid.errors import InputError
from lemgrid.grid.kpis import (
    NONCONVERGED_REASON,
    GridLimits,
    overloads,
    studied_buses,
    violated_intervals,
    voltage_violations,
)
from lemgrid.grid.network import Network
from lemgrid.grid.powerflow import PowerFlowResult, run_powerflow
from lemgrid.grid.profiles import clock_h, in_daily_window
from lemgrid.grid.sensitivity import linearize
from lemgrid.scenario.config import DsoConfig, RequestConfig, clock_hours
from lemgrid.session import AssetPlan, DayAheadSession

GREEN, AMBER, RED = "green", "amber", "red"


def describe_violations(network: Network, result: PowerFlowResult, limits: GridLimits
                        ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Which intervals violate the limits, why (text), and the service needed ('CM', 'VM').

    An interval whose power flow did not converge is violated, with the reason "power flow did
    not converge" and no service (without an operating point there are no sensitivities for a
    flexibility market to clear against).
    """
    volt = voltage_violations(network, result, limits)
    over = overloads(result, limits)
    failed = ~result.converged
    bad = violated_intervals(network, result, limits)
    reasons, services = [], []
    vm = result.vm_pu
    bus_names, branch_names = network.bus_names, network.branch_names
    for t in range(len(bad)):
        parts, service = [], []
        if failed[t]:
            parts.append(NONCONVERGED_REASON)
        if volt[t].any():
            hi = np.nanargmax(np.where(volt[t], vm[t], -np.inf))
            lo = np.nanargmin(np.where(volt[t], vm[t], np.inf))
            if vm[t, hi] > limits.vm_max_pu:
                parts.append(f"overvoltage {vm[t, hi]:.4f} p.u. at {bus_names[hi]}")
            if vm[t, lo] < limits.vm_min_pu:
                parts.append(f"undervoltage {vm[t, lo]:.4f} p.u. at {bus_names[lo]}")
            service.append("VM")
        if over[t].any():
            b = int(np.nanargmax(result.loading_percent[t]))
            parts.append(f"overload {result.loading_percent[t, b]:.1f} % of {branch_names[b]}")
            service.insert(0, "CM")
        reasons.append("; ".join(parts))
        services.append("+".join(service))
    return bad, reasons, np.array(services, dtype=object)


@dataclass(frozen=True, eq=False)
class FlexRecords:
    """The DSO's activations and reservations, one row each, as typed columns.

    Attributes
    ----------
    interval : ndarray of int
        Interval of the horizon (index of the scenario's ``time_index``).
    t : ndarray of int
        The same interval within its session.
    provider, bus, kind, resource, buyer, service : ndarray of str
    direction : ndarray of str
        ``up``, ``down`` or ``reserved`` (a long-term reservation).
    participant : ndarray of int
        The participant paid (position in the scenario's participants).
    kw, baseline_kw : ndarray of float
        Activated (or reserved, mean over the window) power and the resource's scheduled power
        before it [kW] (NaN for reservations).
    price_eur_per_kwh, availability_eur, utilisation_eur, penalty_eur : ndarray of float
    delivered : ndarray of bool
    shares : tuple of (dict of int to float, or None)
        Reservations: availability money by participant [EUR]; None for activations.
    """

    interval: np.ndarray
    t: np.ndarray
    provider: np.ndarray
    participant: np.ndarray
    bus: np.ndarray
    kind: np.ndarray
    resource: np.ndarray
    direction: np.ndarray
    kw: np.ndarray
    baseline_kw: np.ndarray
    price_eur_per_kwh: np.ndarray
    buyer: np.ndarray
    service: np.ndarray
    availability_eur: np.ndarray
    utilisation_eur: np.ndarray
    penalty_eur: np.ndarray
    delivered: np.ndarray
    shares: tuple = ()

    _DTYPES = {"interval": int, "t": int, "participant": int, "kw": float, "baseline_kw": float,
               "price_eur_per_kwh": float, "availability_eur": float, "utilisation_eur": float,
               "penalty_eur": float, "delivered": bool}

    @classmethod
    def build(cls, n: int, shares: tuple | None = None, **columns) -> FlexRecords:
        """``n`` rows; a scalar column is repeated."""
        out: dict[str, np.ndarray] = {}
        for name in cls.__dataclass_fields__:
            if name == "shares":
                continue
            value = np.asarray(columns[name])
            dtype = cls._DTYPES.get(name, object)
            out[name] = (np.full(n, value.item(), dtype=dtype) if value.ndim == 0
                         else value.astype(dtype))
        return cls(**out, shares=tuple(shares) if shares is not None else (None,) * n)

    @classmethod
    def empty(cls) -> FlexRecords:
        return cls.build(0, (), **{name: np.zeros(0) for name in cls.__dataclass_fields__
                                   if name != "shares"})

    @classmethod
    def concat(cls, parts: list[FlexRecords]) -> FlexRecords:
        if not parts:
            return cls.empty()
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts])
                      for name in cls.__dataclass_fields__ if name != "shares"},
                   shares=tuple(x for p in parts for x in p.shares))

    def __len__(self) -> int:
        return len(self.kw)

    def to_frame(self, time_index: pd.DatetimeIndex) -> pd.DataFrame:
        """The rows as a table, ``interval`` as the interval's start time."""
        columns = {name: getattr(self, name) for name in self.__dataclass_fields__
                   if name not in ("shares", "t")}
        columns["interval"] = time_index[self.interval]
        return pd.DataFrame(columns)


@dataclass
class DsoDay:
    """What the DSO did in one session (interval indices relative to the session)."""

    plan: AssetPlan  # the delivered plan
    schedule_delta_kw: np.ndarray  # planned change of each participant's net injection (Td, N)
    state: np.ndarray  # (Td,) green / amber / red
    reason: list[str]
    records: FlexRecords = field(default_factory=FlexRecords.empty)  # activations, reservations
    flex_income_eur: np.ndarray | None = None  # participants, after fees and penalties (Td, N)
    buyer_paid_eur: dict = field(default_factory=dict)  # buyer -> (Td,) net payments
    aggregator_fee_eur: np.ndarray | None = None  # (Td,)
    violations_before: np.ndarray | None = None  # (Td,) bool: forecast, before any flexibility


class DsoOperator:
    """The DSO (and the TSO's market) over a simulation: configuration, registry, accounts."""

    def __init__(self, scenario, config: DsoConfig, rng: np.random.Generator) -> None:
        self.scenario = scenario
        self.config = config
        self.rng = rng
        self.network = scenario.network
        self.limits = scenario.limits
        parts = scenario.participants
        n = len(parts)
        self.providers = parts.ids.astype(object).copy()
        self.fee_share = np.zeros(n)
        represented = np.zeros(n, bool)
        ids = list(parts.ids)
        for k, agg in enumerate(scenario.config.aggregators):
            members = set(agg.participants)
            unknown = sorted(members - set(ids))
            if unknown:
                raise InputError(f"aggregators[{k}].participants: unknown participant "
                                 f"{str(unknown[0])!r}")
            chosen = [ids.index(m) for m in agg.participants]
            if agg.every is not None:
                chosen += list(range(agg.offset, n, agg.every))
            for i in chosen:
                if represented[i] and self.providers[i] != agg.id:
                    raise InputError(f"aggregators[{k}]: participant {str(ids[i])!r} is already "
                                     f"represented by {str(self.providers[i])!r}")
                self.providers[i] = agg.id
                self.fee_share[i] = agg.fee_share
                represented[i] = True
        flex = config.flexibility
        self.eligible = represented if flex.providers == "aggregators" else np.ones(n, bool)
        p = flex.prices
        self.prices = OfferPrices(p.pv, p.availability_eur_per_kw_h, by_kind=p.by_kind)
        self.registry = ActivationRegistry()
        #: Offers made by the providers (e.g. over the market server's API) used instead of
        #: offers derived from their schedules; None: derived (``lemgrid simulate``).
        self.offer_book: FlexOffers | None = None
        #: Requests the grid operators made themselves (over the market server's API; intervals
        #: of the session): buyer 'DSO' cleared with the scenario's ``flexibility.requests``,
        #: 'TSO' with its ``coordination.tso_requests``; None: none.
        self.request_book: FlexRequests | None = None
        self.bus_names = self.network.bus_names
        self.monitored = np.flatnonzero(studied_buses(self.network))

    # -- helpers -----------------------------------------------------------------------------
    def _flow(self, session: DayAheadSession, plan: AssetPlan, load_kw: np.ndarray,
              pv_kw: np.ndarray) -> tuple[np.ndarray, PowerFlowResult]:
        """Bus injections (T, n_bus) of a plan on given profiles, and their AC power flow."""
        net = plan.net_injection_kw(load_kw, pv_kw)
        p = self.scenario.participants_to_buses(net) + session.background_p_kw
        return p, run_powerflow(self.network, p, session.q_kvar)

    def _requests(self, configs: list[RequestConfig], buyer: str, session, where: str
                  ) -> FlexRequests:
        n_bus = self.network.n_bus
        if not configs:
            return FlexRequests.empty(n_bus)
        clock = clock_h(session.scenario.time_index[session.start:session.stop])
        rows = []
        for k, request in enumerate(configs):
            area = np.zeros(n_bus, bool)
            if request.buses is None:
                area[:] = True
            else:
                for b in request.buses:
                    try:
                        area[self.network.bus_position(b)] = True
                    except InputError as exc:
                        raise InputError(f"{where}[{k}].buses: {exc}") from None
            start, end = clock_hours(request.start), clock_hours(request.end)
            for t in np.flatnonzero(in_daily_window(clock, start, end)):
                rows.append((t, area, UP if request.direction == "up" else DOWN, request))
        if not rows:
            return FlexRequests.empty(n_bus)
        requests = FlexRequests(
            buyer=np.array([buyer] * len(rows)),
            service=np.array([r[3].service for r in rows]),
            interval=np.array([r[0] for r in rows]), area=np.array([r[1] for r in rows]),
            direction=np.array([r[2] for r in rows]), kw=np.array([r[3].kw for r in rows]),
            max_price_eur_per_kwh=np.array([r[3].max_price_eur_per_kwh for r in rows]))
        requests.validate(where)
        return requests

    def _offers(self, session: DayAheadSession, plan: AssetPlan, pv_kw: np.ndarray,
                intervals: np.ndarray, *, window=None, prices=None
                ) -> FlexOffers:
        if self.offer_book is not None and prices is None:
            # Offers the providers made themselves (the market server's book): the same rows
            # every round, what earlier rounds took is left out by the registry.
            book = self.offer_book
            keep = np.isin(book.interval, intervals)
            if window is not None:
                keep &= (book.interval >= window[0]) & (book.interval < window[1])
            return book.take(keep)
        parts = self.scenario.participants
        offers = offers_from_plan(plan, pv_kw, parts.bus,
                                  self.providers.astype(str), session.dt_h, prices or self.prices,
                                  intervals=intervals, window=window, kinds=session.kinds)
        keep = self.eligible[offers.participant] & np.isin(
            offers.kind, self.config.flexibility.kinds)
        offers = offers.take(keep)
        offers.validate(self.network.n_bus)
        return offers

    def _need(self, p, q, flow: PowerFlowResult, bad, services, v_margin, l_margin
              ) -> GridNeed | None:
        """The linearised limits at the ``bad`` intervals whose power flow ``flow`` (of the
        injections ``p``, ``q``) converged; None if there is none (an interval without an
        operating point has no sensitivities)."""
        intervals = np.flatnonzero(bad & flow.converged)
        if not len(intervals):
            return None
        return GridNeed(intervals=intervals,
                        linearization=linearize(self.network, p[intervals], q[intervals]),
                        limits=self.limits, voltage_margin_pu=v_margin[intervals],
                        loading_margin_percent=l_margin[intervals], monitored=self.monitored,
                        service=services[intervals])

    def _records(self, session: DayAheadSession, offers: FlexOffers, activations: Activations, delivered,
                 availability_paid: bool) -> FlexRecords:
        dt = session.dt_h
        k = np.asarray(activations.offer, dtype=int)
        kw = np.asarray(activations.kw, dtype=float)
        price = np.asarray(activations.price_eur_per_kwh, dtype=float)
        delivered = np.asarray(delivered, dtype=bool)
        t = offers.interval[k].astype(int)
        utilisation, penalty = activation_money_eur(
            kw, price, np.where(delivered, 0.0, kw),
            self.config.flexibility.non_delivery_penalty_eur_per_kwh, dt)
        return FlexRecords.build(
            len(k), interval=session.start + t, t=t, provider=offers.provider[k].astype(str),
            participant=offers.participant[k], bus=self.bus_names[offers.bus[k]].astype(str),
            kind=offers.kind[k].astype(str), resource=offers.resource[k].astype(str),
            direction=np.where(offers.direction[k] == UP, "up", "down"), kw=kw,
            baseline_kw=offers.baseline_kw[k], price_eur_per_kwh=price,
            buyer=np.asarray(activations.buyer).astype(str),
            service=np.asarray(activations.service).astype(str),
            availability_eur=offers.availability_eur_per_kw_h[k] * kw * dt
            if availability_paid else np.zeros(len(k)),
            utilisation_eur=utilisation, penalty_eur=penalty, delivered=delivered)

    # -- one session -----------------------------------------------------------------------
    def process(self, session: DayAheadSession, plan: AssetPlan) -> DsoDay:
        """Run the DSO's day for a session whose market produced ``plan`` (see module doc)."""
        config, flex = self.config, self.config.flexibility
        parts = self.scenario.participants
        # Offers and activations count intervals from the session's start: each session books
        # its own (a resource sold at 12:00 today is free at 12:00 tomorrow).
        self.registry = ActivationRegistry()
        start, stop = session.start, session.stop
        n_t, n = stop - start, len(parts)
        dt = session.dt_h
        realised_load = parts.load_p_kw[start:stop]
        realised_pv = parts.pv_p_kw[start:stop]
        if flex.lead_time == "intraday":
            view_load, view_pv = realised_load, realised_pv
        else:
            view_load, view_pv = session.load_kw, session.pv_kw
        p, flow = self._flow(session, plan, view_load, view_pv)
        bad, reasons, services = describe_violations(self.network, flow, self.limits)
        violations_before = bad.copy()
        state = np.where(bad, AMBER, GREEN).astype(object)
        reason = list(reasons)
        planned: list[tuple[FlexOffers, Activations]] = []
        records: list[FlexRecords] = []
        window = None
        availability_on_activation = True
        if flex.lead_time == "long-term":
            records.append(self._reserve(session, plan, view_pv))
            window = self._reservation_window(session)
            availability_on_activation = False

        dso_requests = self._requests(flex.requests, "DSO", session, "dso.flexibility.requests")
        tso_requests = self._requests(config.coordination.tso_requests, "TSO", session,
                                      "dso.coordination.tso_requests")
        if self.request_book is not None and len(self.request_book):
            own = self.request_book.buyer == "DSO"
            dso_requests = _concat_requests(dso_requests, self.request_book.take(own))
            tso_requests = _concat_requests(tso_requests, self.request_book.take(~own))
        scheme = config.coordination.scheme
        if scheme == "none" and len(tso_requests):
            raise InputError("dso.coordination.tso_requests need a scheme (local-first or common)")
        current = plan
        if config.traffic_light and flex.enabled and (bad.any() or len(dso_requests)
                                                       or (scheme == "common"
                                                           and len(tso_requests))):
            v_margin = np.full((n_t, self.network.n_bus), flex.voltage_margin_pu)
            l_margin = np.full((n_t, self.network.n_branch), flex.loading_margin_percent)
            requests = dso_requests
            if scheme == "common":
                requests = _concat_requests(dso_requests, tso_requests)
            for iteration in range(flex.max_iterations):
                need_intervals = bad | np.isin(np.arange(n_t), requests.interval)
                if not need_intervals.any():
                    break
                intervals = np.flatnonzero(need_intervals)
                if window is not None:
                    intervals = intervals[(intervals >= window[0]) & (intervals < window[1])]
                offers = self._offers(session, current, view_pv, intervals, window=window)
                capacity = self.registry.remaining(offers)
                need = self._need(p, session.q_kvar, flow, bad, services, v_margin, l_margin)
                budgets = energy_budgets(current, offers, dt,
                                         session.kinds)
                if flex.clearing == "continuous" and need is not None and not len(requests):
                    acts, _ = clear_flex_worst_violation_first(offers, capacity, dt, need, budgets)
                else:
                    acts, _ = clear_optimal(
                        offers, capacity, dt, need=need,
                        requests=requests if iteration == 0 else None, budgets=budgets,
                        pricing=flex.pricing,
                        price_cap_eur_per_kwh=max(config.red.regulated_price_eur_per_kwh,
                                                  requests.max_price_eur_per_kwh.max(
                                                      initial=0.0)))
                if not len(acts):
                    break
                self.registry.record(offers, acts)
                planned.append((offers, acts))
                current = apply_activations(current, offers, acts, dt, session.kinds)
                p, flow = self._flow(session, current, view_load, view_pv)
                still, _, services_now = describe_violations(self.network, flow, self.limits)
                if not still.any():
                    bad = still
                    break
                # Tighten what AC still finds violated and clear the rest again.
                vm = np.nan_to_num(flow.vm_pu, nan=1.0)
                v_margin += np.maximum(vm - self.limits.vm_max_pu, 0) + np.maximum(
                    self.limits.vm_min_pu - vm, 0)
                l_margin += np.maximum(np.nan_to_num(flow.loading_percent)
                                       - self.limits.max_loading_percent, 0)
                bad, services = still, np.where(still, services_now, services)
                requests = FlexRequests.empty(self.network.n_bus)

        if flex.pricing == "pay-as-clear":
            planned = one_price_per_product(planned)

        if scheme == "local-first" and len(tso_requests):
            intervals = np.unique(tso_requests.interval)
            offers = self._offers(session, current, view_pv, intervals, window=window)
            p_now, flow_now = self._flow(session, current, view_load, view_pv)
            guard_bad = np.isin(np.arange(n_t), intervals)
            guard = self._need(p_now, session.q_kvar, flow_now,
                               guard_bad, np.full(n_t, "CM", dtype=object),
                               np.zeros((n_t, self.network.n_bus)),
                               np.zeros((n_t, self.network.n_branch)))
            # Where the DSO's power flow has no solution it cannot tell harm: no TSO activation.
            offers = offers.take(np.isin(offers.interval,
                                         guard.intervals if guard is not None else []))
            capacity = self.registry.remaining(offers)  # forwarded: price and capacity kept
            acts = clear_requests_merit_order(
                offers, capacity, tso_requests, config.coordination.pricing, guard=guard,
                budgets=energy_budgets(current, offers, dt,
                                         session.kinds))
            if len(acts):
                self.registry.record(offers, acts)
                planned.append((offers, acts))
                current = apply_activations(current, offers, acts, dt, session.kinds)

        # Delivery: each activation is delivered with probability delivery_rate.
        planned_plan, delivered_plan = current, plan
        for offers, acts in planned:
            delivered = self.rng.random(len(acts)) < flex.delivery_rate
            records.append(self._records(session, offers, acts, delivered,
                                         availability_on_activation))
            keep = np.flatnonzero(delivered)
            delivered_plan = apply_activations(
                delivered_plan, offers, Activations(acts.offer[keep], acts.kw[keep],
                                                    acts.price_eur_per_kwh[keep],
                                                    acts.buyer[keep], acts.service[keep]),
                dt, session.kinds)

        # Red: what is still violated at delivery (and, if red control is on, curtailed /
        # controlled directly).
        final_plan = delivered_plan
        if config.traffic_light:
            final_plan, red_records, red_bad, red_reasons = self._red(
                session, delivered_plan, control=config.red.enabled)
            records.append(red_records)
            for t in np.flatnonzero(red_bad):
                state[t] = RED
                reason[t] = red_reasons[t] or reason[t]

        def flexible(x):
            return x.asset_kw(n) - x.curtailment_kw

        # The schedule follows what the DSO and TSO activated and what the DSO controlled; an
        # activation not delivered stays a deviation (imbalance) of its provider.
        schedule_delta = (flexible(planned_plan) - flexible(plan)
                          + flexible(final_plan) - flexible(delivered_plan))
        day = DsoDay(plan=final_plan, schedule_delta_kw=schedule_delta, state=state,
                     reason=reason, records=FlexRecords.concat(records),
                     violations_before=violations_before)
        self._money(day, n_t, n)
        return day

    def _red(self, session: DayAheadSession, plan: AssetPlan, control: bool):
        """AC power flow of what is delivered: the violated intervals (red) and, with
        ``control``, the direct control that removes the violations (registered like any
        activation, so it never takes capacity another buyer already has)."""
        parts = self.scenario.participants
        start, stop = session.start, session.stop
        load, pv = parts.load_p_kw[start:stop], parts.pv_p_kw[start:stop]
        dt = session.dt_h
        records: list[FlexRecords] = []
        p, flow = self._flow(session, plan, load, pv)
        bad, reasons, services = describe_violations(self.network, flow, self.limits)
        red_bad = bad.copy()
        regulated = self.config.red.regulated_price_eur_per_kwh
        prices = OfferPrices(regulated, 0.0, others=regulated)
        margin_v = np.zeros((stop - start, self.network.n_bus))
        margin_l = np.zeros((stop - start, self.network.n_branch))
        for _ in range(5 if control else 0):
            if not bad.any():
                break
            offers = offers_from_plan(plan, pv, parts.bus,
                                      parts.ids.astype(str), dt, prices,
                                      intervals=np.flatnonzero(bad), kinds=session.kinds)
            need = self._need(p, session.q_kvar, flow, bad, services, margin_v, margin_l)
            if need is None:
                break
            acts, _ = clear_optimal(offers, self.registry.remaining(offers), dt, need=need,
                                    buyer="DSO",
                                    budgets=energy_budgets(plan, offers, dt, session.kinds))
            if not len(acts):
                break
            acts = Activations(acts.offer, acts.kw, acts.price_eur_per_kwh, acts.buyer,
                               np.full(len(acts), "red"))
            self.registry.record(offers, acts)
            records.append(self._records(session, offers, acts, np.ones(len(acts), bool), False))
            plan = apply_activations(plan, offers, acts, dt,
                                     session.kinds)
            p, flow = self._flow(session, plan, load, pv)
            bad, _, services = describe_violations(self.network, flow, self.limits)
            vm = np.nan_to_num(flow.vm_pu, nan=1.0)
            margin_v += np.maximum(vm - self.limits.vm_max_pu, 0) + np.maximum(
                self.limits.vm_min_pu - vm, 0) + 1e-4 * bad[:, None]
            margin_l += np.maximum(np.nan_to_num(flow.loading_percent)
                                   - self.limits.max_loading_percent, 0) + 0.05 * bad[:, None]
        return plan, FlexRecords.concat(records), red_bad, reasons

    def _reservation_window(self, session: DayAheadSession) -> tuple[int, int]:
        window = self.config.flexibility.reservation
        if window is None:
            raise InputError("dso.flexibility.reservation: long-term lead time needs a daily "
                             "reservation window (from, to)")
        clock = clock_h(session.scenario.time_index[session.start:session.stop])
        start, end = clock_hours(window.start), clock_hours(window.end)
        inside = np.flatnonzero((clock >= start) & (clock < end))  # a window within the day
        return (int(inside[0]), int(inside[-1]) + 1) if len(inside) else (0, 0)

    def _reserve(self, session: DayAheadSession, plan: AssetPlan, pv: np.ndarray
                 ) -> FlexRecords:
        """Long-term products: the DSO reserves the whole window's flexibility of every eligible
        provider and pays availability for it, used or not."""
        start, stop = self._reservation_window(session)
        if stop <= start:
            return FlexRecords.empty()
        offers = self._offers(session, plan, pv, np.arange(start, stop), window=(start, stop))
        dt = session.dt_h
        records = []
        for provider in np.unique(offers.provider):
            mine = offers.provider == provider
            # Capacity reserved: the larger of up and down per resource and interval, at that
            # offer's availability price (the first of equal ones).
            frame = pd.DataFrame({"r": offers.resource[mine], "t": offers.interval[mine],
                                  "kw": offers.kw[mine],
                                  "price": offers.availability_eur_per_kw_h[mine],
                                  "participant": offers.participant[mine]})
            top = frame.loc[frame.groupby(["r", "t"], sort=True).kw.idxmax()].set_index(
                ["r", "t"])
            top["eur"] = top.kw * top.price * dt
            records.append(FlexRecords.build(
                1, interval=session.start + start, t=start, provider=str(provider),
                participant=int(top.participant.iloc[0]), bus="", kind="reservation",
                resource="", direction="reserved", kw=float(top.kw.groupby("t").sum().mean()),
                baseline_kw=float("nan"), price_eur_per_kwh=0.0, buyer="DSO", service="CM",
                availability_eur=float(top.eur.sum()), utilisation_eur=0.0, penalty_eur=0.0,
                delivered=True, shares=(top.groupby("participant").eur.sum().to_dict(),)))
        return FlexRecords.concat(records)

    def _money(self, day: DsoDay, n_t: int, n: int) -> None:
        """Who pays whom for the day's flexibility."""
        income = np.zeros((n_t, n))
        fees = np.zeros(n_t)
        paid: dict[str, np.ndarray] = {}
        rec = day.records
        for r in range(len(rec)):
            t, owner, penalty = int(rec.t[r]), int(rec.participant[r]), float(rec.penalty_eur[r])
            gross = float(rec.availability_eur[r]) + float(rec.utilisation_eur[r])
            buyer = paid.setdefault(str(rec.buyer[r]), np.zeros(n_t))
            buyer[t] += gross - penalty
            shares = rec.shares[r] or {owner: gross}
            for participant, amount in shares.items():
                fee = self.fee_share[participant] * amount
                income[t, participant] += amount - fee
                fees[t] += fee
            income[t, owner] -= penalty
        day.flex_income_eur, day.buyer_paid_eur, day.aggregator_fee_eur = income, paid, fees


def _concat_requests(a: FlexRequests, b: FlexRequests) -> FlexRequests:
    return FlexRequests(*(np.concatenate([x, y]) for x, y in zip(
        (a.buyer, a.service, a.interval, a.area, a.direction, a.kw, a.max_price_eur_per_kwh),
        (b.buyer, b.service, b.interval, b.area, b.direction, b.kw, b.max_price_eur_per_kwh),
        strict=True)))
