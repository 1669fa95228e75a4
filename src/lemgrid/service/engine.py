"""Every call of the server into the lab, in one module, so that the operator and the lab clear
and settle with the same code and this module alone follows the lab when it is restructured.

* Clearing: :func:`lemgrid.market.clear` on an :class:`~lemgrid.market.OrderBatch` (the code of
  ``lemgrid clear`` and of the order-based designs of ``lemgrid simulate``).
* Settlement: the clearing's cash flows per participant (the lab's
  :class:`~lemgrid.market.ClearingResult`), as balanced double-entry postings in µ€.
* Delivery: :func:`lemgrid.settlement.bills.settle` (the settlement of ``lemgrid simulate``) on
  the session's trades and signed meter readings: imbalance only where a market commitment is
  broken, network charges, levies, fixed fees.
* Scenario: :func:`lemgrid.scenario.load_scenario` for the participants, the design, the tariffs
  and the interval length.
* The DSO: the scenario's days, sessions and owners' schedules as ``lemgrid simulate`` steps
  them (:class:`GridCalendar`), the traffic light (:func:`traffic_light`), what each resource
  can offer (:func:`offer_room`) and the DSO's day on the offers providers made and the TSO's
  requests (:func:`clear_flexibility`, :class:`lemgrid.dso.operator.DsoOperator`).
* Continuous sessions use the lab's order book directly (:mod:`lemgrid.service.intraday`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from lemgrid.ledger.units import eur_per_kwh_to_meur

if TYPE_CHECKING:
    import numpy as np

    from lemgrid.dso.operator import DsoDay, DsoOperator
    from lemgrid.scenario import Scenario
    from lemgrid.sim.designs import AssetPlan, DayAheadSession

#: Order-based designs the server runs (the lab's mechanisms): the auctions clear at gate
#: closure, ``continuous`` on arrival (:mod:`lemgrid.service.intraday`).
MECHANISMS = ("uniform", "pay-as-bid", "continuous")
#: A session of a market without a local market (design ``none``): it takes no orders, and its
#: delivery is settled with the retailer alone, as ``lemgrid simulate`` settles design ``none``.
NO_MARKET = "none"
#: What a session may be run with.
SESSION_MECHANISMS = (*MECHANISMS, NO_MARKET)


@dataclass(frozen=True)
class MarketSpec:
    """What the server takes from a scenario: its participants' meters and its design."""

    meters: frozenset[str]
    mechanism: str
    #: The lab's settlement prices; the scenario defaults' when None.
    prices: object | None = field(default=None)
    #: Length of a delivery interval [h].
    dt_h: float = 0.25
    #: The scenario's aggregators: id -> the participants it represents.
    aggregators: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: The scenario file, when it has a ``dso:`` block (the server then validates the grid).
    dso_scenario: str | None = None


def load_market(path: str) -> MarketSpec:
    """Read a scenario file: participant ids are the meters keys may be bound to, and its design
    runs the sessions.

    Raises
    ------
    NotBuiltError
        If the scenario's design is neither order-based (``uniform``, ``pay-as-bid``,
        ``continuous``) nor without a local market (``none``): the server does not run the
        designs that clear by optimising the members' assets (``community``, ``p2p``, ...).
    """
    from lemgrid.designs import get_design, is_local_market
    from lemgrid.errors import NotBuiltError
    from lemgrid.scenario import load_scenario

    scenario = load_scenario(path)
    design = scenario.config.market.design
    if design in MECHANISMS:
        mechanism = design
    elif not is_local_market(get_design(design)):
        mechanism = NO_MARKET
    else:
        raise NotBuiltError(
            f"market.design: {design!r} (scenario {path}) is not served by the market server: it "
            "clears from the members' assets and forecasts, not from participants' orders; the "
            f"server runs {', '.join(MECHANISMS)} (orders) and {NO_MARKET!r} (no local market)")
    from lemgrid.settlement.bills import Prices

    ids = [str(i) for i in scenario.participants.ids]
    aggregators = {agg.id: frozenset(agg.member_ids(ids))
                   for agg in scenario.config.aggregators}
    return MarketSpec(frozenset(ids), mechanism, Prices.from_scenario(scenario),
                      float(scenario.dt_h), aggregators,
                      str(path) if scenario.config.dso is not None else None)


def default_prices():
    """The lab's settlement prices of a scenario that sets none (tariff and settlement defaults)."""
    from lemgrid.scenario.config import SettlementConfig, TariffConfig
    from lemgrid.settlement.bills import Prices

    return Prices.from_scenario(SimpleNamespace(tariffs=TariffConfig(), config=SimpleNamespace(
        settlement=SettlementConfig())))


def clear_orders(orders: Sequence[Mapping], mechanism: str,
                 market_id: str) -> tuple[list[dict], dict[str, float]]:
    """Clear one session's orders with the lab's mechanism; trades in ledger units.

    Parameters
    ----------
    orders : sequence of mapping
        ``order_id``, ``participant``, ``side``, ``quantity_wh`` [Wh], ``price_meur_per_kwh``
        [m€/kWh], ``interval``, in arrival order.
    mechanism : {'uniform', 'pay-as-bid', 'continuous'}
    market_id : str
        Prefix of the trade ids.

    Returns
    -------
    trades : list of dict
        ``trade`` payloads (quantity in Wh, rounded down to the Wh, price rounded to the m€/kWh).
    cash_eur : dict
        Money each participant receives from the clearing [EUR] (the lab's cash flows, exact).
    """
    import numpy as np

    from lemgrid.market import OrderBatch, clear

    if not orders:
        return [], {}
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism {mechanism!r} clears no orders")
    batch = OrderBatch.from_arrays(
        order_id=np.array([o["order_id"] for o in orders], dtype=object),
        participant=np.array([o["participant"] for o in orders], dtype=object),
        side=np.array([o["side"] for o in orders], dtype=object),
        quantity_kwh=np.array([o["quantity_wh"] / 1000 for o in orders]),
        price_eur_per_kwh=np.array([o["price_meur_per_kwh"] / 1000 for o in orders]),
        interval=np.array([o["interval"] for o in orders]),
        timestamp_s=np.arange(len(orders), dtype=float),
        source="server orders")
    result = clear(batch, mechanism)  # type: ignore[arg-type]
    cash_eur: dict[str, float] = {}
    for o, amount in zip(orders, result.cash_flow_eur):
        cash_eur[o["participant"]] = cash_eur.get(o["participant"], 0.0) + float(amount)
    trades = []
    for i, (b, s) in enumerate(zip(result.trade_buy, result.trade_sell)):
        # Down to the Wh: pro-rata rationing of tied orders splits quantities into fractions
        # of a Wh, and rounding them to nearest could fill an order beyond its quantity.
        quantity_wh = math.floor(float(result.trade_quantity_kwh[i]) * 1000 + 1e-6)
        if quantity_wh <= 0:
            continue
        buy, sell = orders[int(b)], orders[int(s)]
        trades.append({"kind": "trade", "market_id": market_id, "interval": buy["interval"],
                       "trade_id": f"{market_id}-t{i}", "buyer": buy["participant"],
                       "seller": sell["participant"], "quantity_wh": quantity_wh,
                       "price_meur_per_kwh": eur_per_kwh_to_meur(
                           float(result.trade_price_eur_per_kwh[i])),
                       "buy_order_id": buy["order_id"], "sell_order_id": sell["order_id"]})
    return trades, cash_eur


def settle(cash_eur: Mapping[str, float]) -> list[dict]:
    """Double-entry postings of a session from the lab's cash flows [µ€].

    Each participant's amount is its cash flow rounded to the µ€; what rounding leaves (at most
    half a µ€ per participant) is posted to the operator's ``rounding`` account so that the
    postings sum to zero exactly.

    Raises
    ------
    ValueError
        If the cash flows themselves do not balance (more than the rounding could explain).
    """
    amounts_ueur = {who: round(amount * 1e6) for who, amount in sorted(cash_eur.items())}
    postings: list[dict[str, str | int]] = [
        {"account": who, "amount_ueur": ueur} for who, ueur in amounts_ueur.items() if ueur]
    residual = sum(amounts_ueur.values())
    if abs(residual) > len(postings):
        raise ValueError(f"the session does not balance: cash flows sum to {residual} µ€")
    if residual:
        postings.append({"account": ROUNDING_ACCOUNT, "amount_ueur": -residual})
    return postings


#: The operator's account receiving what rounding to the µ€ leaves.
ROUNDING_ACCOUNT = "operator:rounding"


#: Statement parts [µ€] from the lab's :class:`~lemgrid.settlement.bills.Bill` components.
STATEMENT_PARTS = {"market_ueur": "market_eur", "surplus_share_ueur": "surplus_share_eur",
                   "retail_energy_ueur": "retail_energy_eur", "network_ueur": "network_eur",
                   "imbalance_ueur": "imbalance_eur", "levies_ueur": "levies_eur",
                   "fixed_ueur": "fixed_eur"}

#: Accounts receiving what participants pay for delivery.
RECEIVERS = ("retailer", "dso", "state")


def settle_delivery(trades: Sequence[Mapping], market_ueur: Mapping[str, int],
                    readings: Mapping[str, tuple[int, int]], prices, dt_h: float
                    ) -> tuple[list[dict], list[dict], float]:
    """Settle a delivered session with the lab's settlement (:func:`lemgrid.settlement.bills.settle`).

    The market commitments are the session's trades; the rest of what a participant's meter
    registered is exchanged with the retailer, and only the part that breaks a commitment is
    imbalance (a seller short of what it sold, a buyer exporting what it bought), exactly as in
    ``lemgrid simulate``. A participant with trades but no reading is settled as metering zero.

    Parameters
    ----------
    trades : sequence of mapping
        ``buyer``, ``seller``, ``quantity_wh`` [Wh].
    market_ueur : mapping
        What each participant received at clearing [µ€] (the clearing statements).
    readings : mapping
        participant -> (import_wh, export_wh) [Wh] registered over the interval.
    prices : lemgrid.settlement.bills.Prices
    dt_h : float
        Interval length [h].

    Returns
    -------
    statements : list of dict
        One per participant: energies [Wh] and cost parts [µ€, positive = pays] (``total_ueur``
        is their sum, the market part included).
    postings : list of dict
        Balanced postings of the delivery part (participants pay, retailer, DSO and state
        receive; what rounding leaves goes to :data:`ROUNDING_ACCOUNT`).
    budget_gap_eur : float
        The lab's budget check: participants' costs minus what the counterparties receive.
    """
    import numpy as np

    from lemgrid.settlement.bills import Positions, settle

    names = sorted({*readings, *(x["buyer"] for x in trades), *(x["seller"] for x in trades),
                    *(k for k in market_ueur if k != ROUNDING_ACCOUNT)})
    if not names:
        return [], [], 0.0
    col = {n: i for i, n in enumerate(names)}
    bought, sold = np.zeros((1, len(names))), np.zeros((1, len(names)))
    for x in trades:
        bought[0, col[x["buyer"]]] += x["quantity_wh"] / 1000
        sold[0, col[x["seller"]]] += x["quantity_wh"] / 1000
    paid = np.array([[-market_ueur.get(n, 0) / 1e6 for n in names]])
    zeros = np.zeros_like(bought)
    positions = Positions(scheduled_kw=(sold - bought) / dt_h, market_bought_kwh=bought,
                          market_sold_kwh=sold, local_bought_kwh=bought, local_sold_kwh=sold,
                          market_paid_eur=paid, retail_import_kwh=zeros,
                          retail_export_kwh=zeros, price_eur_per_kwh=np.full(1, np.nan))
    metered = np.array([[(readings.get(n, (0, 0))[1] - readings.get(n, (0, 0))[0]) / 1000 / dt_h
                         for n in names]])
    bill = settle(positions, metered, prices, dt_h)
    statements, postings = [], []
    for n in names:
        i = col[n]
        parts = {k: round(float(getattr(bill, v)[0, i]) * 1e6) for k, v in STATEMENT_PARTS.items()}
        imp, exp = readings.get(n, (0, 0))
        statements.append({
            "participant": n, "bought_wh": round(bought[0, i] * 1000),
            "sold_wh": round(sold[0, i] * 1000), "metered_import_wh": imp,
            "metered_export_wh": exp,
            "imbalance_short_wh": round(float(bill.imbalance_short_kwh[0, i]) * 1000),
            "imbalance_long_wh": round(float(bill.imbalance_long_kwh[0, i]) * 1000),
            **parts, "total_ueur": sum(parts.values())})
        delivery = sum(v for k, v in parts.items() if k not in ("market_ueur",
                                                                 "surplus_share_ueur"))
        if delivery:
            postings.append({"account": n, "amount_ueur": -delivery})
    received = {"retailer": bill.retailer_eur, "dso": bill.dso_eur, "state": bill.state_eur}
    for account in RECEIVERS:
        amount = round(float(received[account].sum()) * 1e6)
        if amount:
            postings.append({"account": f"operator:{account}", "amount_ueur": amount})
    residual = sum(p["amount_ueur"] for p in postings)
    if abs(residual) > len(postings):
        raise ValueError(f"the delivery does not balance: postings sum to {residual} µ€")
    if residual:
        postings.append({"account": ROUNDING_ACCOUNT, "amount_ueur": -residual})
    return statements, postings, bill.budget_gap_eur
# --- the DSO: AC validation, traffic light, flexibility -------------------------------------

@dataclass
class GridDay:
    """The DSO's view of one day-ahead session of a scenario, built as ``lemgrid simulate``
    builds it (same forecasts, same owners' schedules, same DSO configuration).

    Attributes
    ----------
    scenario : Scenario
    session : DayAheadSession
    plan : AssetPlan
        The owners' schedules the order market clears against (the lab's order designs).
    start, stop : int
        Horizon intervals of the day.
    index : int
        Position of the day in the scenario's calendar.
    """

    scenario: Scenario
    session: DayAheadSession
    plan: AssetPlan
    start: int
    stop: int
    index: int = 0
    #: The calendar's DSO (one over the horizon, as in ``lemgrid simulate``).
    dso: DsoOperator | None = None

    def operator(self) -> DsoOperator:
        """The DSO of the day's calendar (a fresh one with the scenario's random stream for a
        day built on its own)."""
        if self.dso is not None:
            return self.dso
        import numpy as np

        from lemgrid.dso.operator import DsoOperator

        from lemgrid.errors import InputError

        config = self.scenario.config.dso
        if config is None:
            raise InputError("scenario: has no dso block (no grid validation in this market)")
        return DsoOperator(self.scenario, config, np.random.default_rng(self.scenario.config.seed))

    def reservation_window(self) -> tuple[int, int] | None:
        """The horizon intervals [start, stop) the DSO reserves in this day (``lead_time:
        long-term``); None without long-term products or if the window misses the day."""
        dso = self.operator()
        if dso.config.flexibility.lead_time != "long-term":
            return None
        start, stop = dso._reservation_window(self.session)
        return (self.start + start, self.start + stop) if stop > start else None

    def reserves(self, interval: int) -> bool:
        """Whether the DSO reserves a horizon interval (it is in the day's window)."""
        window = self.reservation_window()
        return window is not None and window[0] <= interval < window[1]


class DayNotReady(Exception):
    """A day of the calendar that needs an earlier day the DSO has not cleared yet."""


class GridCalendar:
    """The DSO's days of a scenario, stepped as ``lemgrid simulate`` steps its sessions (the
    lab's ``run_sessions``): one random stream and one :class:`~lemgrid.dso.operator.DsoOperator`
    (with its activation registry) over the horizon; each day's batteries and registered kinds
    start where the previous day's final plan (after the DSO's activations) left them.

    A day is built once the days before it are cleared (:meth:`clear`), in calendar order.

    Parameters
    ----------
    scenario_path : str

    Raises
    ------
    InputError
        If the scenario has no ``dso:`` block.
    """

    def __init__(self, scenario_path: str) -> None:
        import numpy as np

        from lemgrid.dso.operator import DsoOperator
        from lemgrid.errors import InputError
        from lemgrid.scenario import load_scenario
        from lemgrid.settlement.bills import Prices
        from lemgrid.sim.runner import agent_types, day_bounds, forecasts

        scenario = load_scenario(scenario_path)
        config = scenario.config.dso
        if config is None:
            raise InputError("scenario: has no dso block (no grid validation in this market)")
        self.scenario = scenario
        self.bounds = day_bounds(scenario)
        self.rng = np.random.default_rng(scenario.config.seed)
        self.load_f, self.pv_f = forecasts(scenario, self.rng)
        _, self.q_kvar = scenario.bus_injections(scenario.participants.net_p_kw)
        self.prices = Prices.from_scenario(scenario)
        self.agents = agent_types(scenario)
        self.dso = DsoOperator(scenario, config, self.rng)
        self._kinds = scenario.participants.kinds
        self.days: list[GridDay] = []
        #: The DSO's result of each cleared day, in calendar order.
        self.cleared: list = []

    def index(self, interval: int) -> int:
        """Position in the calendar of the day containing a horizon interval.

        Raises
        ------
        InputError
            If the interval is outside the horizon.
        """
        from lemgrid.errors import InputError

        for k, (start, stop) in enumerate(self.bounds):
            if start <= interval < stop:
                return k
        raise InputError(f"interval: {interval} is outside the scenario's horizon")

    def day(self, k: int, price_forecast=None) -> GridDay:
        """Day ``k``, built (once) from where day ``k - 1`` ended.

        Parameters
        ----------
        price_forecast : ndarray (Td,), optional
            What optimising agents expect to pay [EUR/kWh] (the lab: the previous day's market
            prices at the same clock time); NaN (no expectation) by default.

        Raises
        ------
        DayNotReady
            If an earlier day is not cleared yet.
        """
        import numpy as np

        from lemgrid.session import DayAheadSession
        from lemgrid.sim.designs import own_schedules
        from lemgrid.sim.runner import window_kinds

        if k < len(self.days):
            return self.days[k]
        if k > len(self.cleared):
            start = self.bounds[len(self.cleared)][0]
            raise DayNotReady(f"interval: the DSO validates the days in calendar order (each "
                              f"starts where the one before left the batteries); the day "
                              f"starting at interval {start} is not cleared yet")
        start, stop = self.bounds[k]
        session = DayAheadSession(
            scenario=self.scenario, start=start, stop=stop, load_kw=self.load_f[start:stop],
            pv_kw=self.pv_f[start:stop], prices=self.prices,
            agents=self.agents, rng=self.rng, zip_traders=None,
            price_forecast=np.full(stop - start, np.nan) if price_forecast is None
            else np.asarray(price_forecast, dtype=float),
            background_p_kw=self.scenario.background_p_kw[start:stop],
            q_kvar=self.q_kvar[start:stop], kinds=window_kinds(self._kinds, start, stop))
        day = GridDay(self.scenario, session, own_schedules(session), start, stop, k, self.dso)
        self.days.append(day)
        return day

    def clear(self, day: GridDay, offers: Sequence[Mapping],
              requests: Sequence[Mapping] = ()) -> dict:
        """The DSO's day on the offers providers made and the grid operators' requests
        (:func:`clear_flexibility`); the next day then starts from its final plan."""
        from lemgrid.sim.runner import carry_kinds

        if day.index != len(self.cleared):
            raise DayNotReady(f"interval: day {day.index} of the calendar is cleared already "
                              "or comes after one that is not")
        outcome, dso_day = clear_flexibility(day, offers, requests)
        # Batteries, EVs, heat-pump stores: every kind starts where the day's final plan ends.
        self._kinds = carry_kinds(self._kinds, dso_day.plan.kinds)
        self.cleared.append(dso_day)
        return outcome

    def carried_prices(self, k: int, prices_eur_per_kwh) -> np.ndarray:
        """The previous day's market prices [EUR/kWh] carried to day ``k`` by clock time (the
        lab's price expectation of optimising agents)."""
        from lemgrid.sim.runner import same_clock_time

        return same_clock_time(self.scenario.time_index, self.bounds[k - 1], self.bounds[k],
                               prices_eur_per_kwh)


def grid_day(scenario_path: str, interval: int) -> GridDay:
    """The DSO's day containing a horizon interval, of a fresh :class:`GridCalendar`.

    Raises
    ------
    InputError
        If the scenario has no ``dso:`` block or the interval is outside the horizon.
    DayNotReady
        If the interval is after the first day (build those through a calendar that clears
        the days before).
    """
    calendar = GridCalendar(scenario_path)
    return calendar.day(calendar.index(interval))


def traffic_light(day: GridDay) -> list[dict]:
    """The forecast traffic light of every interval of the day: AC power flow of the schedules
    on the DSO's view (the first step of the lab's :meth:`DsoOperator.process`).

    Returns
    -------
    list of dict
        ``interval`` (horizon), ``state`` ('green' or 'amber'), ``reason``, ``service``.
    """
    from lemgrid.dso.operator import AMBER, GREEN, describe_violations

    dso = day.operator()
    flex = dso.config.flexibility
    parts = day.scenario.participants
    if flex.lead_time == "intraday":
        load, pv = parts.load_p_kw[day.start:day.stop], parts.pv_p_kw[day.start:day.stop]
    else:
        load, pv = day.session.load_kw, day.session.pv_kw
    _, flow = dso._flow(day.session, day.plan, load, pv)
    bad, reasons, services = describe_violations(dso.network, flow, dso.limits)
    return [{"interval": day.start + t, "state": AMBER if bad[t] else GREEN,
             "reason": reasons[t], "service": str(services[t])} for t in range(len(bad))]


def offer_room(day: GridDay) -> dict[tuple[str, int, int, int], tuple[float, float, str]]:
    """What each resource can offer: (kind, asset, interval, direction) -> (most kW, baseline kW,
    owner participant id), from the owners' schedules (the lab's ``offers_from_plan``)."""
    dso = day.operator()
    dso.offer_book = None  # what the schedules allow, not what was offered
    every: Any = None  # every interval of the day
    offers = dso._offers(day.session, day.plan, day.session.pv_kw, every)
    ids = day.scenario.participants.ids
    return {(str(offers.kind[k]), int(offers.asset[k]), day.start + int(offers.interval[k]),
             int(offers.direction[k])): (float(offers.kw[k]), float(offers.baseline_kw[k]),
                                         str(ids[offers.participant[k]]))
            for k in range(len(offers))}


def _areas(network: Any, buses: Sequence[str]) -> Any:
    """Each request's area (m, n_bus) from its comma-separated bus names (empty: every bus)."""
    import numpy as np

    area = np.ones((len(buses), network.n_bus), bool)
    for k, names in enumerate(buses):
        if names:
            area[k] = False
            area[k, [network.bus_position(b) for b in names.split(",")]] = True
    return area


def clear_flexibility(day: GridDay, offers: Sequence[Mapping],
                      requests: Sequence[Mapping] = ()) -> tuple[dict, DsoDay]:
    """The DSO's day with the offers providers made and the requests the grid operators made:
    flexibility market, TSO coordination, AC re-checks, delivery and red, by the lab's
    :meth:`DsoOperator.process`.

    Parameters
    ----------
    offers : sequence of mapping
        ``offer_id``, ``provider``, ``kind``, ``asset``, ``interval`` (horizon),
        ``direction`` ('up'/'down'), ``power_w`` [W], ``price_meur_per_kwh`` [m€/kWh],
        ``baseline_w`` [W], ``participant`` (owner id), optionally ``min_power_w`` (minimum
        acceptance quantity [W]), ``price_points`` (the price curve: [W, m€/kWh] pairs) and
        ``availability_meur_per_kw_h`` (a long-term product's availability price [m€ per kW and
        hour reserved]).
    requests : sequence of mapping
        ``interval`` (horizon), ``direction``, ``power_w`` [W], ``max_price_meur_per_kwh``
        [m€/kWh], ``service``, ``buses`` (comma-separated bus names it may be served from;
        empty: every bus), ``buyer`` ('TSO' if absent: cleared with the scenario's
        ``dso.coordination.tso_requests``, by its ``scheme``; 'DSO': with its
        ``dso.flexibility.requests``).

    Returns
    -------
    outcome : dict
        ``lights``: per interval ``interval``, ``state``, ``reason``; ``activations``: the lab's
        records with ``offer_id``, ``power_w`` and the money in µ€; ``reservations`` (long-term
        products): per provider and owner of the reserved resources, ``provider``,
        ``participant``, the window [``interval``, ``window_stop``) and ``availability_ueur``.
    dso_day : DsoDay
        The lab's result (its final plan is where the next day starts).
    """
    import numpy as np

    from lemgrid.dso.flexibility import DOWN, UP, FlexOffers, FlexRequests, price_curves

    dso = day.operator()
    parts = day.scenario.participants
    position = {str(p): i for i, p in enumerate(parts.ids)}
    n = len(offers)
    participant = np.array([position[o["participant"]] for o in offers], dtype=int)
    book = FlexOffers(
        provider=np.array([o["provider"] for o in offers], dtype=object).astype(str),
        participant=participant,
        kind=np.array([o["kind"] for o in offers], dtype=object).astype(str),
        asset=np.array([o["asset"] for o in offers], dtype=int),
        bus=np.asarray(parts.bus)[participant] if n else np.array([], int),
        interval=np.array([o["interval"] - day.start for o in offers], dtype=int),
        direction=np.array([UP if o["direction"] == "up" else DOWN for o in offers], dtype=int),
        kw=np.array([o["power_w"] / 1000 for o in offers], dtype=float),
        price_eur_per_kwh=np.array([o["price_meur_per_kwh"] / 1000 for o in offers],
                                   dtype=float),
        availability_eur_per_kw_h=np.array([o.get("availability_meur_per_kw_h", 0) / 1000
                                            for o in offers], dtype=float),
        window_start=np.zeros(n, int), window_stop=np.full(n, day.stop - day.start),
        baseline_kw=np.array([o["baseline_w"] / 1000 for o in offers], dtype=float),
        min_kw=np.array([o.get("min_power_w", 0) / 1000 for o in offers], dtype=float),
        price_curve=price_curves([None if o.get("price_points") is None else
                                  np.asarray(o["price_points"], float) / 1000 for o in offers]))
    book.validate(dso.network.n_bus, "offers")
    request_book = FlexRequests(
        buyer=np.array([r.get("buyer", "TSO") for r in requests], dtype=object).astype(str),
        service=np.array([r["service"] for r in requests], dtype=object).astype(str),
        interval=np.array([r["interval"] - day.start for r in requests], dtype=int),
        area=_areas(dso.network, [r.get("buses", "") for r in requests]),
        direction=np.array([UP if r["direction"] == "up" else DOWN for r in requests],
                           dtype=int),
        kw=np.array([r["power_w"] / 1000 for r in requests], dtype=float),
        max_price_eur_per_kwh=np.array([r["max_price_meur_per_kwh"] / 1000
                                        for r in requests], dtype=float))
    request_book.validate("grid operators' requests")
    dso.offer_book, dso.request_book = book, request_book
    try:
        result = dso.process(day.session, day.plan)
    finally:
        dso.offer_book, dso.request_book = None, None
    by_key = {(o["kind"], int(o["asset"]), int(o["interval"]), o["direction"]): o["offer_id"]
              for o in offers}
    rec = result.records
    activations = []
    for j in np.flatnonzero(rec.kind != "reservation"):
        key = (str(rec.kind[j]), int(str(rec.resource[j]).split(":")[1]),
               day.start + int(rec.t[j]), str(rec.direction[j]))
        activations.append({
            "offer_id": by_key.get(key), "provider": str(rec.provider[j]),
            "participant": str(parts.ids[rec.participant[j]]),
            "interval": day.start + int(rec.t[j]), "direction": str(rec.direction[j]),
            "power_w": round(float(rec.kw[j]) * 1000),
            "price_meur_per_kwh": eur_per_kwh_to_meur(float(rec.price_eur_per_kwh[j])),
            "buyer": str(rec.buyer[j]), "service": str(rec.service[j]),
            "delivered": bool(rec.delivered[j]),
            "utilisation_ueur": round(float(rec.utilisation_eur[j]) * 1e6),
            "penalty_ueur": round(float(rec.penalty_eur[j]) * 1e6)})
    reservations = []
    window = day.reservation_window()
    for j in np.flatnonzero(rec.kind == "reservation"):
        assert window is not None  # a reservation is of the day's window
        for owner, eur in sorted(rec.shares[j].items()):
            reservations.append({"provider": str(rec.provider[j]),
                                 "participant": str(parts.ids[owner]),
                                 "interval": window[0], "window_stop": window[1],
                                 "availability_ueur": round(float(eur) * 1e6)})
    lights = [{"interval": day.start + t, "state": str(result.state[t]),
               "reason": result.reason[t]} for t in range(len(result.state))]
    return {"lights": lights, "activations": activations,
            "reservations": reservations}, result
