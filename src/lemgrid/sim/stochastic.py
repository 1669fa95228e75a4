"""The stochastic community schedule (:mod:`lemgrid.market.stochastic`) against the
deterministic one on a scenario's day: expected cost, CVaR, imbalance and AC grid violations on
the same realised profiles.

The day's forecast is the lab's (``lemgrid simulate``'s: the scenario's forecast error model on
its profiles); the scenarios the schedules are made for, and the profiles they are judged on,
are drawn around it with the same error model (``forecast.error``: each member's load and PV
times ``1 + error z``, ``z`` standard normal, clipped at 0), the judged ones with another random
stream (out of sample); the scenario's own realised profiles are judged too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lemgrid.errors import InputError
from lemgrid.market.stochastic import (StochasticDay, StochasticSchedule, cvar, recourse,
                                       solve_schedule)

if TYPE_CHECKING:
    import pandas as pd

    from lemgrid.assets.tables import Batteries
    from lemgrid.scenario.build import Scenario


def _draws(load_kw: np.ndarray, pv_kw: np.ndarray, error: float, n: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    noise = error * rng.standard_normal((2, n, *load_kw.shape))
    return (np.clip(load_kw * (1 + noise[0]), 0, None), np.clip(pv_kw * (1 + noise[1]), 0, None))


def day_batteries(scenario: Scenario, day: int, what: str) -> tuple[int, int, Batteries]:
    """[start, stop) of a day of the horizon and its batteries (at their configured state: a day
    on its own); ``what`` says what needs them, for the error.

    Raises
    ------
    InputError
        If the day is outside the horizon or the scenario has no batteries.
    """
    from lemgrid.sim.runner import day_bounds, window_kinds

    bounds = day_bounds(scenario)
    if not 0 <= day < len(bounds):
        raise InputError(f"day: {day} is outside the horizon's {len(bounds)} days")
    start, stop = bounds[day]
    batteries = window_kinds(scenario.participants.kinds, start, stop).get("battery")
    if batteries is None or not len(batteries):
        raise InputError(f"assets: {what} the members' batteries; this scenario has none")
    return start, stop, batteries


def scenario_days(scenario: Scenario, day: int = 0, n_scenarios: int = 30, n_judged: int = 200,
                  seed: int | None = None) -> dict[str, StochasticDay]:
    """The day's problems: ``scenarios`` (to schedule for), ``forecast`` (one scenario: the
    deterministic schedule's), ``judged`` (out of sample) and ``realised`` (the scenario's own
    profiles).

    Raises
    ------
    InputError
        If the day is outside the horizon, the scenario has no batteries, or a count is not
        positive.
    """
    from lemgrid.settlement.bills import Prices
    from lemgrid.sim.runner import forecasts

    if n_scenarios < 1 or n_judged < 1:
        raise InputError("scenarios: the counts of scenarios must be positive")
    start, stop, batteries = day_batteries(scenario, day, "the stochastic schedule runs")
    parts = scenario.participants
    rng = np.random.default_rng(scenario.config.seed if seed is None else seed)
    load_f, pv_f = (x[start:stop] for x in forecasts(scenario, rng))
    error = scenario.config.forecast.error if scenario.config.forecast.method != "perfect" \
        else 0.0
    prices = Prices.from_scenario(scenario)
    base: dict[str, Any] = {
        "batteries": batteries, "dt_h": float(scenario.dt_h),
        "buy_eur_per_kwh": prices.grid_kwh_eur,
        "sell_eur_per_kwh": prices.export_eur_per_kwh,
        "short_eur_per_kwh": prices.imbalance_short_eur_per_kwh,
        "long_eur_per_kwh": prices.imbalance_long_eur_per_kwh}
    drawn = _draws(load_f, pv_f, error, n_scenarios, rng)
    judged = _draws(load_f, pv_f, error, n_judged, np.random.default_rng(rng.integers(2**63)))
    return {
        "scenarios": StochasticDay(*drawn, **base),
        "forecast": StochasticDay(load_f[None], pv_f[None], **base),
        "judged": StochasticDay(*judged, **base),
        "realised": StochasticDay(parts.load_p_kw[None, start:stop],
                                  parts.pv_p_kw[None, start:stop], **base)}


def violation_intervals(scenario: Scenario, day: int, problem: StochasticDay,
                        schedule: StochasticSchedule) -> np.ndarray:
    """AC power flow of each scenario's delivery (members' PV - load + their batteries'
    output, the background as in the lab): the intervals with a voltage violation, an overload
    or no converged power flow, per scenario (S,)."""
    from lemgrid.grid.kpis import violated_intervals
    from lemgrid.grid.powerflow import run_powerflow
    from lemgrid.sim.runner import day_bounds

    start, stop = day_bounds(scenario)[day]
    s_n, n_t, n = problem.load_kw.shape
    b = problem.batteries
    owns = np.zeros((len(b), n))
    owns[np.arange(len(b)), b.owner] = 1.0  # battery -> its member
    p = problem.pv_kw - problem.load_kw + schedule.battery_kw @ owns
    q = np.broadcast_to(-scenario.participants.load_q_kvar[start:stop], (s_n, n_t, n))
    p_bus = scenario.participants_to_buses(p.reshape(-1, n)) + np.tile(
        scenario.background_p_kw[start:stop], (s_n, 1))
    q_bus = scenario.participants_to_buses(q.reshape(-1, n)) + np.tile(
        scenario.background_q_kvar[start:stop], (s_n, 1))
    flow = run_powerflow(scenario.network, p_bus, q_bus)
    return violated_intervals(scenario.network, flow, scenario.limits).reshape(
        s_n, n_t).sum(axis=1)


def compare_schedules(scenario: Scenario, day: int = 0, n_scenarios: int = 30,
                      n_judged: int = 200, risk_weights: Sequence[float] = (0.0, 0.5, 0.9),
                      alpha: float = 0.9, seed: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """The deterministic schedule and the stochastic ones (one per risk weight) of a day.

    Returns
    -------
    pandas.DataFrame
        One row per schedule (``deterministic``, ``stochastic beta=...``): in sample (the
        scenarios scheduled for) ``expected_cost_eur``, ``cvar_eur`` and, for the risk-neutral
        one, ``vss_eur`` (EEV - RP, never negative); out of sample (the judged profiles)
        ``judged_expected_cost_eur``, ``judged_cvar_eur``, ``judged_imbalance_kwh`` (short +
        long, mean), ``judged_violation_intervals`` (mean); and on the scenario's own realised
        profiles ``realised_cost_eur``, ``realised_imbalance_kwh``,
        ``realised_violation_intervals``.
    """
    import pandas as pd

    days = scenario_days(scenario, day, n_scenarios, n_judged, seed)
    plans: list[tuple[str, np.ndarray, float | None]] = [
        ("deterministic", solve_schedule(days["forecast"]).position_kw, None)]
    total = 1 + len(risk_weights)
    rows = []
    for k, beta in enumerate(risk_weights):
        rp = solve_schedule(days["scenarios"], risk_weight=beta, alpha=alpha)
        plans.append((f"stochastic beta={beta:g}", rp.position_kw, beta))
        if progress is not None:
            progress(k + 1, total)
    for name, position, weight in plans:
        row: dict = {"schedule": name, "risk_weight": weight}
        seen = recourse(days["scenarios"], position)
        row["expected_cost_eur"] = seen.expected_cost_eur()
        row["cvar_eur"] = seen.cvar_eur(alpha)
        for where in ("judged", "realised"):
            result = recourse(days[where], position)
            bad = violation_intervals(scenario, day, days[where], result)
            imbalance = result.short_kwh + result.long_kwh
            if where == "judged":
                row |= {"judged_expected_cost_eur": result.expected_cost_eur(),
                        "judged_cvar_eur": result.cvar_eur(alpha),
                        "judged_imbalance_kwh": float(imbalance.mean()),
                        "judged_violation_intervals": float(bad.mean())}
            else:
                row |= {"realised_cost_eur": float(result.cost_eur[0]),
                        "realised_imbalance_kwh": float(imbalance[0]),
                        "realised_violation_intervals": int(bad[0])}
        rows.append(row)
    eev = rows[0]["expected_cost_eur"]  # the deterministic schedule's, in sample
    for row in rows:
        row["vss_eur"] = eev - row["expected_cost_eur"] if row["risk_weight"] == 0 else np.nan
    table = pd.DataFrame(rows).set_index("schedule")
    if progress is not None:
        progress(total, total)
    return table


__all__ = ["compare_schedules", "day_batteries", "scenario_days", "violation_intervals",
           "cvar"]
