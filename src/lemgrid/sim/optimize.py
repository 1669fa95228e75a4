"""Clear a scenario's whole horizon with an optimisation-based design (community or P2P)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lemgrid.designs import options_from_scenario
from lemgrid.errors import InfeasibleError, InputError, NotBuiltError
from lemgrid.scenario import Scenario


@dataclass(frozen=True, eq=False)
class OptimizeOutcome:
    """What ``lemgrid optimize`` writes: schedules, prices, trades and a summary."""

    scenario: Scenario
    design: str
    network: str
    schedule_kw: np.ndarray
    bus_price_eur_per_kwh: np.ndarray | None
    dlmp_components: dict | None
    trades: pd.DataFrame | None
    summary: dict = field(default_factory=dict)
    detail: object = None


def optimize_scenario(scenario: Scenario, design: str | None = None,
                      network: str | None = None) -> OptimizeOutcome:
    """Clear the scenario's horizon with the community or P2P design.

    Parameters
    ----------
    scenario : Scenario
    design : {'community', 'p2p'}, optional
        Default: the scenario's ``market.design``.
    network : {'ignore', 'constrained'}, optional
        Default: the scenario's ``market.network`` (or 'ignore').
    """
    design = design or scenario.market.design
    studies = {"community": _community, "p2p": _p2p}
    if design not in studies:
        raise InputError(f"design must be one of {', '.join(studies)} for optimize, "
                         f"got {design!r}")
    return studies[design](scenario, network)


def _community(scenario: Scenario, network: str | None) -> OptimizeOutcome:
    from lemgrid.grid.kpis import validate_ac
    from lemgrid.market.community_constrained import clear_community_constrained
    from lemgrid.market.community import CommunityOptions, CommunityProblem, solve_community

    options = options_from_scenario(scenario, CommunityOptions, design="community", network=network)
    problem = CommunityProblem.from_scenario(scenario, options)
    t0 = time.perf_counter()
    _, q_inj = scenario.bus_injections(scenario.participants.net_p_kw)
    n_bus = scenario.network.n_bus
    summary: dict = {"design": "community", "network": options.network}
    if options.network == "constrained":
        clearing = clear_community_constrained(
            problem, scenario.network, scenario.background_p_kw, q_inj, scenario.limits,
            losses=options.losses, max_iterations=options.max_ac_iterations)
        result, check = clearing.result, clearing.validation
        prices = result.bus_price_eur_per_kwh
        components = result.dlmp_components
        summary.update(
            iterations=clearing.iterations,
            unconstrained_welfare_eur=clearing.unconstrained.welfare_eur,
            unconstrained_max_voltage_excess_pu=clearing.unconstrained_validation
            .max_voltage_excess_pu,
            unconstrained_max_loading_excess_percent=clearing.unconstrained_validation
            .max_loading_excess_percent)
    else:
        result = solve_community(problem)
        p_inj, _ = scenario.bus_injections(result.schedule_kw)
        check = validate_ac(scenario.network, p_inj, q_inj, scenario.limits)
        prices = np.repeat(result.price_eur_per_kwh[:, None], n_bus, axis=1)
        components = None
        summary.update(iterations=1)
    seconds = time.perf_counter() - t0
    dt = scenario.dt_h
    summary.update(
        welfare_eur=result.welfare_eur, retailer_cost_eur=result.retailer_cost_eur,
        solve_seconds=round(seconds, 4), lp_seconds=round(result.solve_seconds, 4),
        lp_solves=result.lp_solves, import_kwh=float(result.import_kw.sum() * dt),
        export_kwh=float(result.export_kw.sum() * dt),
        curtailment_kwh=float(result.curtailment_kw.sum() * dt),
        **ac_summary(scenario, check),
    )
    return OptimizeOutcome(scenario, "community", options.network, result.schedule_kw, prices,
                           components, None, summary, result)


def _p2p(scenario: Scenario, network: str | None) -> OptimizeOutcome:
    from lemgrid.grid.kpis import validate_ac
    from lemgrid.grid.distance import electrical_distance_ohm
    from lemgrid.market.p2p import clear_p2p, welfare_gap
    from lemgrid.market.p2p.community import P2POptions, p2p_problem

    options = options_from_scenario(scenario, P2POptions, design="p2p", network=network)
    if options.network != "ignore":
        raise NotBuiltError("the p2p design clears without grid limits; use --network ignore "
                            "(the community design clears within them)")
    from lemgrid.assets.kinds import window_tables
    from lemgrid.sim.designs import rule_schedules

    parts, tariffs = scenario.participants, scenario.tariffs
    # The owners run their assets by their rules (every asset kind's business-as-usual over the
    # horizon, as the p2p design's price takers do each day); the peers trade what is left.
    n_t = len(scenario.time_index)
    plan = rule_schedules(parts.load_p_kw, parts.pv_p_kw, window_tables(parts.kinds, 0, n_t),
                          scenario.dt_h)
    assets_kw = plan.asset_kw(len(parts))
    import_price = tariffs.import_eur_per_kwh + tariffs.network_eur_per_kwh
    problem = p2p_problem(
        parts.ids, parts.load_p_kw + np.maximum(-assets_kw, 0.0),
        parts.pv_p_kw + np.maximum(assets_kw, 0.0),
        electrical_distance_ohm(scenario.network, parts.bus), scenario.dt_h,
        import_price, tariffs.export_eur_per_kwh, options)
    price0 = 0.5 * (import_price + tariffs.export_eur_per_kwh)
    t0 = time.perf_counter()
    if options.method == "admm":
        result = clear_p2p(problem, "admm", price0_eur_per_kwh=price0,
                           tol_primal_kwh=options.tolerance_kwh)
    else:
        result = clear_p2p(problem, "central")
    seconds = time.perf_counter() - t0
    n = len(parts)
    schedule = result.p_kw[:, :n]
    trades = result.trades_table()
    trades["interval"] = scenario.time_index[trades["interval"].to_numpy()]
    summary = {
        "design": "p2p", "network": "ignore", "method": options.method,
        "welfare_eur": result.total_welfare_eur, "solve_seconds": round(seconds, 4),
        "iterations": int(np.max(result.iterations)), "converged": bool(np.all(result.converged)),
        "peers": n + 2, "products": problem.n_products,
        "local_traded_kwh": float(trades.loc[~trades.seller.str.startswith("grid-")
                                             & ~trades.buyer.str.startswith("grid-"),
                                             "quantity_kwh"].sum()),
    }
    if options.reference and options.method == "admm":
        # The reference only checks the market; if it fails, say so and keep the market's result.
        t1 = time.perf_counter()
        try:
            central = clear_p2p(problem, "central")
        except InfeasibleError as exc:
            summary.update(central_status="unavailable", central_error=str(exc))
        else:
            summary.update(central_status="optimal", central_welfare_eur=central.total_welfare_eur,
                           gap_to_central=welfare_gap(result, central))
        summary["central_seconds"] = round(time.perf_counter() - t1, 4)
    # Each bus's price: what its participants pay per kWh bought, volume-weighted.
    prices = _bus_purchase_prices(scenario, trades)
    p_inj, q_inj = scenario.bus_injections(schedule)
    check = validate_ac(scenario.network, p_inj, q_inj, scenario.limits)
    summary.update(ac_summary(scenario, check))
    return OptimizeOutcome(scenario, "p2p", "ignore", schedule, prices, None, trades, summary,
                           result)


def ac_summary(scenario: Scenario, check) -> dict:
    """The AC check of a schedule (an ``ACValidation``) for summary.json: voltages of the studied
    buses (the slack apart) and loadings over the converged intervals, intervals over a limit (by
    more than 1e-9), and intervals whose power flow did not converge (violations of their own)."""
    from lemgrid.grid.kpis import voltage_range

    vm_min, _, vm_max, _ = voltage_range(scenario.network, check.result)
    loading = check.result.loading_percent[check.converged]
    with np.errstate(invalid="ignore"):
        volt = (check.voltage_excess_pu > 1e-9).any(axis=1)
        over = (check.loading_excess_percent > 1e-9).any(axis=1)
    return {"ac_vm_min_pu": vm_min, "ac_vm_max_pu": vm_max,
            "ac_max_loading_percent": float(np.nanmax(loading)) if loading.size else np.nan,
            "ac_voltage_violation_intervals": int(volt.sum()),
            "ac_overload_intervals": int(over.sum()),
            "ac_nonconverged_intervals": check.nonconverged_intervals,
            "ac_violation_intervals": int((volt | over | ~check.converged).sum())}


def _bus_purchase_prices(scenario: Scenario, trades: pd.DataFrame) -> np.ndarray:
    parts = scenario.participants
    bus_of = dict(zip(parts.ids, parts.bus, strict=True))
    n_t, n_bus = len(scenario.time_index), scenario.network.n_bus
    money = np.zeros((n_t, n_bus))
    energy = np.zeros((n_t, n_bus))
    buys = trades[trades.buyer.isin(bus_of)]
    t = scenario.time_index.get_indexer(pd.Index(buys["interval"]))
    b = buys["buyer"].map(bus_of).to_numpy(int)
    np.add.at(money, (t, b), (buys.quantity_kwh * buys.price_eur_per_kwh).to_numpy())
    np.add.at(energy, (t, b), buys.quantity_kwh.to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(energy > 1e-9, money / energy, np.nan)


def write_optimize_outputs(outcome: OptimizeOutcome, out: Path) -> None:
    """Write schedule.parquet, participants.csv, prices.parquet, dlmp_components.parquet
    (network-constrained), trades.parquet (p2p) and summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    scenario = outcome.scenario
    index = pd.Index(scenario.time_index, name="interval")
    parts = scenario.participants
    bus_names = list(scenario.network.bus_names)
    pd.DataFrame(outcome.schedule_kw, index=index, columns=list(parts.ids)).to_parquet(
        out / "schedule.parquet")
    pd.DataFrame({"id": parts.ids, "bus": scenario.network.bus_names[parts.bus]}).to_csv(
        out / "participants.csv", index=False)
    pd.DataFrame(outcome.bus_price_eur_per_kwh, index=index, columns=bus_names).to_parquet(
        out / "prices.parquet")
    if outcome.dlmp_components is not None:
        long = pd.DataFrame({
            "interval": np.repeat(scenario.time_index, len(bus_names)),
            "bus": np.tile(bus_names, len(scenario.time_index)),
            **{name: values.ravel() for name, values in outcome.dlmp_components.items()},
        })
        long.to_parquet(out / "dlmp_components.parquet", index=False)
    if outcome.trades is not None:
        outcome.trades.to_parquet(out / "trades.parquet", index=False)
    summary = {"scenario": scenario.name, "grid": scenario.config.grid,
               "start": str(scenario.time_index[0]), "intervals": len(scenario.time_index),
               "participants": len(parts), **outcome.summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
