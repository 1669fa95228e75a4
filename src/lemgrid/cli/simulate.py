"""``lemgrid simulate`` and ``lemgrid compare``: the market lab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, console, user_errors
from lemgrid.designs import BUILTIN

DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "scenario" / "default.yaml"

#: KPIs printed in the terminal (all of them are in kpis.json / comparison.csv).
SHOWN = [
    ("total_cost_eur", "total cost [EUR]"), ("bau_total_cost_eur", "business-as-usual [EUR]"),
    ("total_savings_eur", "savings [EUR]"), ("share_better_off", "share better off"),
    ("gini_savings", "Gini of savings"), ("self_sufficiency", "self-sufficiency"),
    ("self_consumption", "self-consumption"), ("local_traded_kwh", "local traded [kWh]"),
    ("imbalance_short_kwh", "imbalance short [kWh]"), ("peak_import_kw", "peak import [kW]"),
    ("peak_export_kw", "peak export [kW]"), ("losses_kwh", "losses [kWh]"),
    ("voltage_violation_intervals", "voltage violation intervals"),
    ("overload_intervals", "overload intervals"), ("budget_gap_eur", "budget gap [EUR]"),
    ("seconds", "run time [s]"),
]


def _load(scenario: Path | None, days: float | None):
    from lemgrid.scenario import load_scenario

    return load_scenario(scenario or DEFAULT_SCENARIO, days=days)


def _run(loaded, design: str | None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from lemgrid.sim.runner import resolve_design, simulate

    name = resolve_design(loaded, design)
    with Progress(f"[bold]{name}[/] " + "{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("days", total=None)
        return simulate(loaded, name, progress=lambda done, total: bar.update(
            task, completed=done, total=total))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


@app.command()
@user_errors
def simulate(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario YAML (default: the built-in one: a SimBench LV feeder with PV and "
             "batteries, one week, community market)")] = None,
    design: Annotated[str | None, typer.Option(
        help=f"{', '.join(BUILTIN)} or a registered design (lemgrid.designs; default: the "
             "scenario's market.design)")] = None,
    days: Annotated[float | None, typer.Option(help="Override the scenario's days")] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/simulate"),
    report: Annotated[bool, typer.Option(help="Write report.html")] = True,
) -> None:
    """Simulate a market design on a grid, settle it and report.

    Day-ahead sessions with bidding agents, clearing by the design, AC power flow of schedule and
    delivery, settlement against business-as-usual; writes kpis.json, bills.csv,
    intervals.parquet and report.html (and grid_state.csv, flex_activations.csv with a DSO).
    """
    from rich.markup import escape
    from rich.table import Table

    from lemgrid.sim.outputs import write_simulation

    loaded = _load(scenario, days)
    result = _run(loaded, design)
    paths = write_simulation(result, out, report=report)
    table = Table(title=f"{result.scenario}: {result.design} market, {len(result.time_index)} "
                        f"intervals, {len(result.participant_ids)} participants")
    table.add_column("KPI")
    table.add_column("value", justify="right")
    for key, label in SHOWN:
        if key in result.kpis:
            table.add_row(escape(label), _fmt(result.kpis[key]))
    console.print(table)
    console.print("written: " + ", ".join(str(p) for p in paths.values()))


@app.command()
@user_errors
def compare(
    scenario: Annotated[Path | None, typer.Argument(help="Scenario YAML (default: built-in)")
                        ] = None,
    designs: Annotated[str | None, typer.Option(
        help="Comma-separated designs (default: every design of lemgrid.designs)")] = None,
    days: Annotated[float | None, typer.Option(help="Override the scenario's days")] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/compare"),
    report: Annotated[bool, typer.Option(help="Write report.html")] = True,
) -> None:
    """Compare several market designs on the same scenario.

    Writes comparison.csv (one row per design, KPIs as columns), each design's files in a
    subfolder, and a side-by-side report.html.
    """
    from rich.markup import escape
    from rich.table import Table

    from lemgrid.designs import design_names
    from lemgrid.errors import InputError
    from lemgrid.sim.outputs import write_comparison

    names = (list(design_names()) if designs is None
             else [d.strip() for d in designs.split(",") if d.strip()])
    unknown = [d for d in names if d not in design_names()]
    if unknown or not names:
        raise InputError(f"--designs: unknown design {unknown[0] if unknown else '(none)'!r}; "
                         f"choose from {', '.join(design_names())}")
    loaded = _load(scenario, days)
    results = [_run(loaded, name) for name in names]
    paths = write_comparison(results, out, report=report)
    table = Table(title=f"{loaded.name}: {len(loaded.time_index)} intervals")
    table.add_column("KPI")
    for result in results:
        table.add_column(result.design, justify="right")
    for key, label in SHOWN:
        table.add_row(escape(label), *(_fmt(r.kpis.get(key)) for r in results))
    console.print(table)
    console.print("written: " + ", ".join(str(p) for p in paths.values()))
