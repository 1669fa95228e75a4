"""The market lab's time loop: day-ahead sessions over a horizon, delivery, metering, settlement.

For each day: forecasts -> agents schedule their assets and bid (or the manager schedules
everything) -> the design clears (:mod:`lemgrid.sim.designs`) -> the DSO's AC check of the
schedule -> delivery with realised profiles (assets follow their schedule, PV is curtailed as
scheduled) -> metering. Optionally an intraday session per interval trades the deviations of
order-based designs. Then the whole horizon is settled (:mod:`lemgrid.settlement.bills`) against
business-as-usual (the same households without a local market: batteries for self-consumption,
EVs charged on arrival, everything with the retailer), and the delivered grid is checked with the
batched AC power flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from lemgrid.agents.strategies import ZipTraders
from lemgrid.assets.kinds import (
    carry_tables,
    kinds_to_owners,
    owner_series,
    window_tables,
)
from lemgrid.assets.windows import split_windows  # noqa: F401 (re-exported)
from lemgrid.designs import design_options, get_design, is_local_market
from lemgrid.dso.operator import DsoOperator, FlexRecords
from lemgrid.errors import InputError
from lemgrid.grid.powerflow import run_powerflow
from lemgrid.grid.profiles import clock_h
from lemgrid.scenario import Scenario
from lemgrid.session import DayAheadSession, SessionOutcome, net_injection_kw
from lemgrid.settlement.bills import (BILL_COMPONENTS, FlexMoney, Positions, Prices,
                                     local_fills, settle)
from lemgrid.settlement.kpis import market_kpis
from lemgrid.sim.results import SimulationResult

if TYPE_CHECKING:
    from pydantic import BaseModel

    from lemgrid.designs import MarketDesign
    from lemgrid.dso.operator import DsoDay
    from lemgrid.grid.powerflow import PowerFlowResult


def resolve_design(scenario: Scenario, design: str | None) -> str:
    """The design to run: the argument, else the scenario's (``community`` with
    ``network: constrained`` is ``community-constrained``)."""
    name = design or scenario.market.design
    get_design(name)  # an unknown name is an InputError listing the designs
    if (name == "community" and design is None
            and getattr(scenario.market, "network", None) == "constrained"):
        return "community-constrained"
    return name


def agent_types(scenario: Scenario) -> np.ndarray:
    """Each participant's bidding strategy (scenario ``agents``)."""
    config = scenario.config.agents
    ids = list(scenario.participants.ids)
    unknown = sorted(set(config.by_participant) - set(ids))
    if unknown:
        raise InputError(f"agents.by_participant: unknown participant {unknown[0]!r}")
    return np.array([config.by_participant.get(pid, config.default) for pid in ids], dtype=object)


def forecasts(scenario: Scenario, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts of load and PV the day-ahead market works with."""
    parts, config = scenario.participants, scenario.config.forecast
    if config.method == "perfect" or config.error == 0:
        return parts.load_p_kw, parts.pv_p_kw
    noise = config.error * rng.standard_normal((2, *parts.load_p_kw.shape))
    return (np.clip(parts.load_p_kw * (1 + noise[0]), 0, None),
            np.clip(parts.pv_p_kw * (1 + noise[1]), 0, None))


def day_bounds(scenario: Scenario) -> list[tuple[int, int]]:
    """[start, stop) of each day-ahead session: calendar days of the horizon."""
    days = scenario.time_index.normalize()
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    stops = np.r_[starts[1:], len(days)]
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def same_clock_time(time_index: pd.DatetimeIndex, day: tuple[int, int], other: tuple[int, int],
                    values: np.ndarray) -> np.ndarray:
    """Values of the intervals ``day`` carried to the intervals ``other`` by local clock time
    (NaN where ``day`` has no such clock time; the later value where it has it twice)."""
    by_clock = dict(zip(clock_h(time_index[slice(*day)]), values, strict=True))
    return np.array([by_clock.get(c, np.nan) for c in clock_h(time_index[slice(*other)])])


def window_kinds(kinds: dict, start: int, stop: int) -> dict:
    """The kinds' tables of intervals [start, stop) (:func:`lemgrid.assets.kinds.window_tables`)."""
    return window_tables(kinds, start, stop)


def carry_kinds(kinds: dict, plans: dict) -> dict:
    """The kinds' full-horizon tables with the state where the session's plans end."""
    return carry_tables(kinds, plans)


class Delivery(NamedTuple):
    """What was delivered, per interval and participant (T, N)."""

    metered_kw: np.ndarray  # net injection, export positive [kW]
    consumption_kw: np.ndarray  # load, EVs, shiftable loads, battery charging [kW]
    generation_kw: np.ndarray  # PV after curtailment, battery discharge [kW]
    series: dict[str, np.ndarray]  # the kinds' per-owner series (battery_kw, battery_e_kwh)


def deliver_without_market(scenario: Scenario) -> Delivery:
    """Business-as-usual delivery, without a market: batteries for self-consumption, EVs
    charged on arrival.

    Day by day like the markets (same days, same split of EV and shiftable-load windows at
    midnight, stored energy carried over), with the owners' rules on the realised profiles: so a
    market whose participants run their assets by the same rules under perfect forecasts delivers
    exactly business-as-usual, and batteries hold the same energy at every day's end."""
    from lemgrid.sim.designs import rule_schedules

    parts = scenario.participants
    n = len(parts)
    kinds = parts.kinds
    output_days: list[np.ndarray] = []
    drawn_days: list[np.ndarray] = []  # per owner, what every kind draws (kinds one by one)
    made_days: list[np.ndarray] = []  # per owner, what every kind injects
    series_days: list[dict[str, np.ndarray]] = []
    for start, stop in day_bounds(scenario):
        day = window_kinds(kinds, start, stop)
        plan = rule_schedules(parts.load_p_kw[start:stop], parts.pv_p_kw[start:stop], day,
                              scenario.dt_h)
        by_kind = [kinds_to_owners({name: kp}, n, stop - start) for name, kp in plan.kinds.items()]
        zero = np.zeros((stop - start, n))
        output_days.append(plan.asset_kw(n))
        drawn_days.append(sum((np.maximum(-o, 0) for o in by_kind), zero))
        made_days.append(sum((np.maximum(o, 0) for o in by_kind), zero))
        series_days.append(owner_series(day, plan.kinds, n, stop - start))
        kinds = carry_kinds(kinds, plan.kinds)
    output = np.concatenate(output_days)
    metered = net_injection_kw(parts.pv_p_kw, 0.0, parts.load_p_kw, output)
    return Delivery(metered, parts.load_p_kw + np.concatenate(drawn_days),
                    parts.pv_p_kw + np.concatenate(made_days), _join_series(series_days))


def _join_series(days: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([d[key] for d in days]) for key in days[0]} if days else {}


def collect_dso(days: list, scenario: Scenario) -> tuple[FlexMoney, dict]:
    """The DSO's days as money for the settlement, tables and KPIs."""
    income = np.concatenate([d.flex_income_eur for d in days])
    fees = np.concatenate([d.aggregator_fee_eur for d in days])
    n_t = len(income)
    buyers = sorted({b for d in days for b in d.buyer_paid_eur})
    paid = {b: np.concatenate([d.buyer_paid_eur.get(b, np.zeros(len(d.state))) for d in days])
            for b in buyers}
    state = np.concatenate([d.state for d in days])
    reason = [r for d in days for r in d.reason]
    before = np.concatenate([d.violations_before for d in days])
    grid_state = pd.DataFrame({"interval": scenario.time_index, "state": state,
                               "reason": reason})
    records = FlexRecords.concat([d.records for d in days])
    columns = ["interval", "provider", "bus", "direction", "kw", "price_eur_per_kwh", "buyer",
               "availability_eur", "utilisation_eur", "service", "kind", "resource", "baseline_kw",
               "delivered", "penalty_eur"]
    activations = records.to_frame(scenario.time_index)[columns]
    activations = activations.astype({"kw": float, "utilisation_eur": float,
                                      "availability_eur": float, "delivered": bool})
    dt = scenario.dt_h
    used = activations[activations.direction != "reserved"]
    kpis = {
        "amber_intervals": int((state == "amber").sum()),
        "red_intervals": int((state == "red").sum()),
        "forecast_violation_intervals_before_flexibility": int(before.sum()),
        "flex_activations": int(len(used)),
        "flex_activated_kwh": float((used.kw * dt).sum()),
        "flex_cost_eur": float(sum(v.sum() for v in paid.values())),
        "dso_flex_cost_eur": float(paid.get("DSO", np.zeros(n_t)).sum()),
        "tso_flex_cost_eur": float(paid.get("TSO", np.zeros(n_t)).sum()),
        "red_control_kwh": float((used[used.service == "red"].kw * dt).sum()),
        "red_cost_eur": float((used[used.service == "red"].utilisation_eur).sum()),
        "availability_eur": float(activations.availability_eur.sum()),
        "non_delivered_kwh": float((used[~used.delivered].kw * dt).sum()),
    }
    money = FlexMoney(income_eur=income, paid_by_buyer_eur=paid, aggregator_fee_eur=fees)
    return money, {"kpis": kpis, "tables": {"grid_state": grid_state,
                                            "flex_activations": activations}}


def _concat(outcomes: list[SessionOutcome]) -> Positions:
    def join(name: str):
        parts = [getattr(o.positions, name) for o in outcomes]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    return Positions(**{name: join(name) for name in Positions.__dataclass_fields__})


def intraday(positions: Positions, metered_kw: np.ndarray, prices: Prices, dt_h: float,
             participants: np.ndarray, time_index: pd.DatetimeIndex
             ) -> tuple[Positions, dict[str, pd.DataFrame]]:
    """Trade every interval's deviation from the schedule in a uniform auction among the
    participants, at limits of the imbalance prices, before the rest is settled
    (with the retailer, or as imbalance where it breaks a market commitment).

    Returns the positions with the intraday trades, and the intraday orders and trades
    (:func:`lemgrid.sim.designs.order_tables`; none if nobody deviated)."""
    from lemgrid.market import OrderBatch, clear_uniform
    from lemgrid.sim.designs import order_tables

    deviation = (metered_kw - positions.scheduled_kw) * dt_h
    t_idx, n_idx = np.nonzero(np.abs(deviation) > 1e-9)
    if not len(t_idx):
        return positions, {}
    short = deviation[t_idx, n_idx] < 0
    batch = OrderBatch.from_arrays(
        order_id=np.arange(len(t_idx)), participant=participants[n_idx],
        side=np.where(short, "buy", "sell"), quantity_kwh=np.abs(deviation[t_idx, n_idx]),
        price_eur_per_kwh=np.where(short, prices.imbalance_short_eur_per_kwh,
                                   prices.imbalance_long_eur_per_kwh),
        interval=t_idx, price_band_eur_per_kwh=(-1e3, 1e3), source="intraday orders")
    result = clear_uniform(batch)
    filled = result.filled_kwh
    bought, sold, paid = local_fills(deviation.shape, t_idx, n_idx, np.where(short, filled, 0.0),
                                     np.where(short, 0.0, filled), -result.cash_flow_eur)
    tables = order_tables(time_index[t_idx], "intraday", participants[n_idx], short,
                          np.abs(deviation[t_idx, n_idx]), batch.price_eur_per_kwh, result)
    return replace(
        positions,
        scheduled_kw=positions.scheduled_kw + (sold - bought) / dt_h,
        market_bought_kwh=positions.market_bought_kwh + bought,
        market_sold_kwh=positions.market_sold_kwh + sold,
        local_bought_kwh=positions.local_bought_kwh + bought,
        local_sold_kwh=positions.local_sold_kwh + sold,
        market_paid_eur=positions.market_paid_eur + paid), tables


def participant_series(positions: Positions, bill, metered_kw: np.ndarray,
                       kind_series: dict[str, np.ndarray], bau_bill) -> dict[str, np.ndarray]:
    """The per-interval, per-participant columns of participant_intervals.parquet (T, N);
    ``kind_series``: what the asset kinds report per owner (``battery_kw``, ...)."""
    p = positions
    return {
        "scheduled_kw": p.scheduled_kw, "delivered_kw": metered_kw,
        **kind_series,
        "grid_import_kwh": bill.import_kwh, "grid_export_kwh": bill.export_kwh,
        "local_bought_kwh": p.local_bought_kwh, "local_sold_kwh": p.local_sold_kwh,
        "market_bought_kwh": p.market_bought_kwh, "market_sold_kwh": p.market_sold_kwh,
        "retail_import_kwh": bill.retail_import_kwh, "retail_export_kwh": bill.retail_export_kwh,
        "imbalance_short_kwh": bill.imbalance_short_kwh,
        "imbalance_long_kwh": bill.imbalance_long_kwh,
        **{name: getattr(bill, name) for name in BILL_COMPONENTS},
        "cost_eur": bill.cost_eur, "bau_cost_eur": bau_bill.cost_eur,
    }


def simulate(scenario: Scenario, design: str | None = None, *,
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Run a market design over the scenario's horizon, one day-ahead session per day.

    Parameters
    ----------
    scenario : Scenario
    design : str, optional
        A design of :mod:`lemgrid.designs` (``lemgrid.designs.design_names()``); default: the
        scenario's ``market.design``.
    progress : callable, optional
        ``progress(done_days, total_days)``.
    """
    return _run(scenario, design, day_bounds(scenario), progress)


def optimize(scenario: Scenario, design: str | None = None, *,
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Run a market design as one session over the whole horizon (perfect foresight of the
    forecasts for every day at once); the same stages and result type as :func:`simulate`.

    Parameters
    ----------
    scenario : Scenario
    design : str, optional
        A design of :mod:`lemgrid.designs`; default: the scenario's ``market.design``.
    progress : callable, optional
        ``progress(done_sessions, 1)`` once the session is cleared.
    """
    return _run(scenario, design, [(0, len(scenario.time_index))], progress)


@dataclass(frozen=True, eq=False)
class SessionsRun:
    """What the sessions (and the DSO in each) decided over the horizon, per interval (T, N).

    Attributes
    ----------
    positions : Positions
        Market positions, the DSO's activations included.
    asset_kw : ndarray
        Scheduled net output of each participant's assets (every kind) [kW].
    curtailment_kw : ndarray
        Scheduled PV curtailment [kW].
    series : dict of str to ndarray
        What the kinds report per owner (``battery_kw``, ``battery_e_kwh``).
    extra : dict of str to ndarray (T,)
        The design's per-interval series.
    tables : dict of str to pandas.DataFrame
        The design's tables, the sessions' rows one after the other.
    dso_days : list of DsoDay
        The DSO's result of each session (empty without a DSO).
    """

    positions: Positions
    asset_kw: np.ndarray
    curtailment_kw: np.ndarray
    series: dict[str, np.ndarray]
    extra: dict[str, np.ndarray]
    tables: dict[str, pd.DataFrame]
    dso_days: list[DsoDay]


def run_sessions(scenario: Scenario, design: MarketDesign, options: BaseModel,
                 days: list[tuple[int, int]], prices: Prices, rng: np.random.Generator,
                 load_f: np.ndarray, pv_f: np.ndarray,
                 progress: Callable[[int, int], None] | None = None) -> SessionsRun:
    """Stage 1: clear every session with the design on the forecasts, the DSO checking and
    adjusting each; stored energy and price expectations carried from session to session."""
    parts = scenario.participants
    n_t, n = parts.load_p_kw.shape
    dt = scenario.dt_h
    agents = agent_types(scenario)
    _, q_all = scenario.bus_injections(parts.net_p_kw)
    zip_config = scenario.config.agents.zip
    zip_traders = (ZipTraders(n, prices.retail_eur_per_kwh - prices.local_network_eur_per_kwh,
                              prices.export_eur_per_kwh, zip_config.learning_rate,
                              zip_config.momentum, zip_config.initial_margin, rng)
                   if (agents == "zip").any() else None)
    kinds = parts.kinds
    price_forecast = np.full(n_t, np.nan)
    outcomes: list[SessionOutcome] = []
    assets: list[np.ndarray] = []
    curtailments: list[np.ndarray] = []
    series_days: list[dict[str, np.ndarray]] = []
    dso = DsoOperator(scenario, scenario.config.dso, rng) if scenario.config.dso else None
    dso_days: list[DsoDay] = []
    for k, (start, stop) in enumerate(days):
        session = DayAheadSession(
            scenario=scenario, start=start, stop=stop, load_kw=load_f[start:stop],
            pv_kw=pv_f[start:stop], prices=prices, agents=agents, rng=rng, zip_traders=zip_traders,
            price_forecast=price_forecast[start:stop],
            background_p_kw=scenario.background_p_kw[start:stop],
            q_kvar=q_all[start:stop], kinds=window_kinds(kinds, start, stop))
        outcome = design.clear_session(session, options)
        plan = outcome.plan
        if dso is not None:
            dso_day = dso.process(session, plan)
            dso_days.append(dso_day)
            plan = dso_day.plan
            outcome.positions = outcome.positions.shifted(dso_day.schedule_delta_kw, dt)
        outcomes.append(outcome)
        assets.append(plan.asset_kw(n))
        series_days.append(owner_series(session.kinds, plan.kinds, n, stop - start))
        curtailments.append(plan.curtailment_kw)
        kinds = carry_kinds(kinds, plan.kinds)
        # Tomorrow's optimisers expect today's prices at the same local clock time (a
        # daylight-saving day has 23 or 25 hours).
        if k + 1 < len(days):
            price_forecast[slice(*days[k + 1])] = same_clock_time(
                scenario.time_index, (start, stop), days[k + 1],
                outcome.positions.price_eur_per_kwh)
        if progress is not None:
            progress(k + 1, len(days))
    extra = {key: np.concatenate([o.extra[key] for o in outcomes])
             for key in outcomes[0].extra} if outcomes else {}
    names = dict.fromkeys(name for o in outcomes for name in o.tables)
    tables = {name: pd.concat([o.tables[name] for o in outcomes if name in o.tables],
                              ignore_index=True) for name in names}
    return SessionsRun(_concat(outcomes), np.concatenate(assets), np.concatenate(curtailments),
                       _join_series(series_days), extra, tables, dso_days)


def deliver(scenario: Scenario, run: SessionsRun) -> Delivery:
    """Stage 2: delivery with the realised load and PV, the assets as scheduled (curtailment at
    most the PV there is)."""
    parts = scenario.participants
    asset = run.asset_kw
    curtailment = np.minimum(run.curtailment_kw, parts.pv_p_kw)
    metered = net_injection_kw(parts.pv_p_kw, curtailment, parts.load_p_kw, asset)
    return Delivery(metered, parts.load_p_kw + np.maximum(-asset, 0),
                    parts.pv_p_kw - curtailment + np.maximum(asset, 0), run.series)


class GridViews(NamedTuple):
    """Stage 4: AC power flows of the delivered, business-as-usual and scheduled injections and
    their KPIs (:func:`lemgrid.grid.kpis.grid_kpis` as dicts)."""

    delivered: PowerFlowResult
    bau: PowerFlowResult
    grid: dict
    bau_grid: dict
    scheduled_grid: dict


def grid_views(scenario: Scenario, scheduled_kw: np.ndarray, metered_kw: np.ndarray,
               bau_metered_kw: np.ndarray, bau_is_delivered: bool) -> GridViews:
    """Stage 4: the DSO's view of the schedule (forecast), of what was delivered and of
    business-as-usual, in AC (``bau_is_delivered``: the same injections, one power flow)."""
    from lemgrid.grid.kpis import grid_kpis

    network, dt = scenario.network, scenario.dt_h
    scheduled_flow = run_powerflow(network, *scenario.bus_injections(scheduled_kw))
    delivered = run_powerflow(network, *scenario.bus_injections(metered_kw))
    bau_flow = delivered if bau_is_delivered else run_powerflow(
        network, *scenario.bus_injections(bau_metered_kw))
    return GridViews(delivered, bau_flow,
                     grid_kpis(network, delivered, scenario.limits, dt).to_dict(),
                     grid_kpis(network, bau_flow, scenario.limits, dt).to_dict(),
                     grid_kpis(network, scheduled_flow, scenario.limits, dt).to_dict())


def _run(scenario: Scenario, design: str | None, days: list[tuple[int, int]],
         progress: Callable[[int, int], None] | None) -> SimulationResult:
    """The stages of a run: sessions, delivery, settlement, grid KPIs (``days``: the sessions'
    [start, stop) intervals)."""
    t_start = time.perf_counter()
    design = resolve_design(scenario, design)
    market_design = get_design(design)
    options = design_options(scenario, design)
    # Only designs whose options have ``intraday`` (the order markets) trade deviations.
    intraday_session = bool(getattr(options, "intraday", False))
    local_market = is_local_market(market_design)
    parts = scenario.participants
    n_t, n = parts.load_p_kw.shape
    dt = scenario.dt_h
    prices = Prices.from_scenario(scenario)
    rng = np.random.default_rng(scenario.config.seed)
    load_f, pv_f = forecasts(scenario, rng)
    bau = deliver_without_market(scenario)
    bau_metered = bau.metered_kw

    dso_days: list[DsoDay] = []
    extra: dict[str, np.ndarray] = {}
    tables: dict[str, pd.DataFrame] = {}
    if not local_market and scenario.config.dso is None:
        positions = Positions.retail_only(bau_metered, dt)
        delivery = bau
    else:
        run = run_sessions(scenario, market_design, options, days, prices, rng, load_f, pv_f,
                           progress)
        delivery = deliver(scenario, run)
        positions, extra, tables, dso_days = run.positions, run.extra, run.tables, run.dso_days
        if intraday_session:
            positions, intraday_tables = intraday(positions, delivery.metered_kw, prices, dt,
                                                  parts.ids, scenario.time_index)
            for name, table in intraday_tables.items():
                tables[name] = pd.concat([tables.get(name), table], ignore_index=True)
    metered = delivery.metered_kw

    # Stage 3: settlement.
    flex_money, dso_outputs = collect_dso(dso_days, scenario) if dso_days else (None, None)
    # Without a market nobody commits to a schedule (it is only the DSO's forecast view): what is
    # metered is settled with the retailer, as in business-as-usual, plus flexibility money.
    settled = positions if local_market else Positions.retail_only(metered, dt)
    bill = settle(settled, metered, prices, dt, flex_money)
    bau_bill = settle(Positions.retail_only(bau_metered, dt), bau_metered, prices, dt)

    views = grid_views(scenario, positions.scheduled_kw, metered, bau_metered,
                       bau_is_delivered=not local_market and not dso_days)
    grid, bau_grid, scheduled_grid = views.grid, views.bau_grid, views.scheduled_grid
    delivered, bau_flow = views.delivered, views.bau
    consumption, generation = delivery.consumption_kw, delivery.generation_kw
    kpis = {
        "design": design,
        "intervals": n_t,
        "participants": n,
        **market_kpis(bill, bau_bill, metered, consumption, generation,
                      positions.local_volume_kwh, dt),
        "peak_import_kw": grid["peak_import_kw"],
        "peak_export_kw": grid["peak_export_kw"],
        "losses_kwh": grid["losses_kwh"],
        "voltage_violation_intervals": grid["voltage_violation_intervals"],
        "overload_intervals": grid["overload_intervals"],
        "nonconverged_intervals": grid["nonconverged_intervals"],
        "violation_intervals": grid["violation_intervals"],
        "vm_min_pu": grid["vm_min_pu"],
        "vm_max_pu": grid["vm_max_pu"],
        "max_loading_percent": grid["max_loading_percent"],
        "scheduled_voltage_violation_intervals": scheduled_grid["voltage_violation_intervals"],
        "scheduled_overload_intervals": scheduled_grid["overload_intervals"],
        "scheduled_nonconverged_intervals": scheduled_grid["nonconverged_intervals"],
        "bau_peak_import_kw": bau_grid["peak_import_kw"],
        "bau_peak_export_kw": bau_grid["peak_export_kw"],
        "bau_losses_kwh": bau_grid["losses_kwh"],
        "bau_voltage_violation_intervals": bau_grid["voltage_violation_intervals"],
        "bau_overload_intervals": bau_grid["overload_intervals"],
        "bau_nonconverged_intervals": bau_grid["nonconverged_intervals"],
    }
    if dso_outputs is not None:
        kpis.update(dso_outputs["kpis"])
    network = scenario.network
    result = SimulationResult(
        scenario=scenario.name, design=design, grid=scenario.config.grid,
        time_index=pd.DatetimeIndex(scenario.time_index), dt_h=dt,
        participant_ids=parts.ids, participant_bus=network.bus_names[parts.bus],
        bus_names=network.bus_names, branch_names=network.branch_names,
        tariffs=scenario.tariffs.model_dump(), limits=scenario.config.grid_limits.model_dump(),
        scheduled_kw=positions.scheduled_kw, metered_kw=metered,
        local_bought_kwh=positions.local_bought_kwh, local_sold_kwh=positions.local_sold_kwh,
        grid_import_kwh=bill.import_kwh, grid_export_kwh=bill.export_kwh,
        cost_eur=bill.cost_eur, bau_cost_eur=bau_bill.cost_eur,
        participant_series=participant_series(positions, bill, metered, delivery.series,
                                              bau_bill),
        price_eur_per_kwh=positions.price_eur_per_kwh,
        local_volume_kwh=positions.local_volume_kwh,
        transformer_p_kw=delivered.p_slack_kw, bau_transformer_p_kw=bau_flow.p_slack_kw,
        losses_kw=delivered.losses_kw, vm_pu=delivered.vm_pu,
        loading_percent=delivered.loading_percent, kpis=kpis, extra_intervals=extra,
        tables={**tables, **(dso_outputs["tables"] if dso_outputs is not None else {})},
    )
    seconds = time.perf_counter() - t_start
    kpis["seconds"] = round(seconds, 3)
    return replace(result, seconds=seconds)


def compare(scenario: Scenario, designs: Sequence[str] | None = None, *,
            progress: Callable[[str, int, int], None] | None = None) -> list[SimulationResult]:
    """Simulate several designs on the same scenario (``lemgrid compare``).

    Parameters
    ----------
    scenario : Scenario
    designs : list of str, optional
        Designs of :mod:`lemgrid.designs`; default: every registered design.
    progress : callable, optional
        ``progress(design, done_days, total_days)``.

    Returns
    -------
    list of SimulationResult
        One per design, in the order given.
    """
    from lemgrid.designs import design_names

    names = list(design_names() if designs is None else designs)
    for name in names:
        get_design(name)
    def reporter(name: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    return [simulate(scenario, name, progress=reporter(name)) for name in names]

