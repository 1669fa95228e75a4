"""``lemgrid simulate`` and ``lemgrid compare``: the market lab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, check_horizon, console, progress_bar, quiet_option, user_errors
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


def _load(scenario: Path | None, days: float | None, start: str | None = None,
          seed: int | None = None):
    """Load the scenario with the command's overrides; an override at fault is named as its
    option (``--start``, ``--days``, ``--seed``)."""
    from lemgrid.errors import InputError
    from lemgrid.scenario import load_scenario

    check_horizon(start, days)
    options = {"start": ("--start", start), "days": ("--days", days), "seed": ("--seed", seed)}
    try:
        return load_scenario(scenario or DEFAULT_SCENARIO, days=days, start=start, seed=seed)
    except InputError as exc:
        option, value = options.get(exc.field or "", (None, None))
        if value is None:
            raise
        raise InputError(f"{option} {value}: {exc}") from None


def _name(loaded, scenario: Path | None) -> str:
    """A scenario's name for titles: its own, else its file's, else the built-in one's."""
    return loaded.config.name or (scenario.stem if scenario else "default")


def _run(loaded, design: str | None, quiet: bool = False):
    from lemgrid.sim.runner import resolve_design, simulate

    name = resolve_design(loaded, design)
    with progress_bar(f"{name}: days", quiet) as progress:
        return simulate(loaded, name, progress=progress)


START_HELP = ("Override the scenario's start: the first day (2016-06-01) or instant "
              "(2016-06-01T06:00) of the horizon, in the grid's local time (SimBench: German "
              "time, daylight saving included)")
SEED_HELP = "Override the scenario's seed (forecast errors and other random draws), >= 0"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) < 5e-4:
            value = 0.0  # rounding noise of sums (a budget gap of -1e-14 EUR) shows as 0.000
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
    start: Annotated[str | None, typer.Option(help=START_HELP)] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=2**63 - 1, help=SEED_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/simulate"),
    report: Annotated[bool, typer.Option(help="Write report.html")] = True,
    ledger: Annotated[Path | None, typer.Option(
        help="Also write every session to this new verifiable ledger (signed orders, trades, "
             "DSO activations, meter readings, statements; a checkpoint per session anchored "
             "on an EVM chain; needs the [chain] extra)")] = None,
    chain_rpc: Annotated[str | None, typer.Option(
        help="JSON-RPC URL of the node to anchor --ledger's checkpoints on (default: an "
             "in-process EVM)")] = None,
    quiet: Annotated[bool, quiet_option()] = False,
    via_server: Annotated[bool, typer.Option(
        "--via-server",
        help="Agents trade as HTTP clients of a market server, each with its own key: the "
             "one at --server, or one started in this process on loopback (order-based "
             "designs and community)")] = False,
    server: Annotated[str | None, typer.Option(
        metavar="URL", help="The market server for --via-server (needs --operator-key); "
                            "default: in-process on loopback")] = None,
    operator_key: Annotated[Path | None, typer.Option(
        help="The server's operator key (PEM), for --via-server URL")] = None,
) -> None:
    """Simulate a market design on a grid, settle it and report.

    Day-ahead sessions with bidding agents, clearing by the design, AC power flow of schedule and
    delivery, settlement against business-as-usual; writes kpis.json, bills.csv,
    intervals.parquet and report.html (and grid_state.csv, flex_activations.csv with a DSO).
    """
    from lemgrid.errors import InputError
    from lemgrid.sim.outputs import write_simulation

    if chain_rpc is not None and ledger is None:
        raise InputError("--chain-rpc needs --ledger")
    if ledger is not None and (ledger.exists() or ledger.is_symlink()):
        raise InputError(f"--ledger: {ledger} already exists; choose a new path")
    loaded = _load(scenario, days, start, seed)
    if not via_server:
        if server is not None or operator_key is not None:
            raise InputError("--server, --operator-key: only with --via-server")
        result = _run(loaded, design, quiet)
    else:
        from lemgrid.cli.via_server import run_via_server

        result = run_via_server(loaded, design, server, operator_key, quiet)
    paths = write_simulation(result, out, report=report)
    if ledger is not None:
        from lemgrid.ledger.simulation import record_simulation

        written = record_simulation(result, ledger, seed=loaded.config.seed, rpc_url=chain_rpc)
        paths = {**paths, "ledger": written.path}
        console.print(f"ledger: {written.entries} entries, {written.sessions} sessions, "
                      f"{written.anchored} checkpoints anchored on {written.chain} "
                      f"(contract {written.contract})", highlight=False)
    print_result(result, paths)


def print_result(result, paths: dict) -> None:
    """The headline KPIs of a run and the files written."""
    from rich.markup import escape
    from rich.table import Table

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
    start: Annotated[str | None, typer.Option(help=START_HELP)] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=2**63 - 1, help=SEED_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/compare"),
    report: Annotated[bool, typer.Option(help="Write report.html")] = True,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Compare several market designs on the same scenario.

    Writes comparison.csv (one row per design, KPIs as columns), each design's files in a
    subfolder, and a side-by-side report.html.
    """
    from rich.markup import escape

    from lemgrid.designs import design_names
    from lemgrid.errors import InputError
    from lemgrid.sim.outputs import write_comparison

    names = (list(design_names()) if designs is None
             else [d.strip() for d in designs.split(",") if d.strip()])
    unknown = [d for d in names if d not in design_names()]
    if unknown or not names:
        raise InputError(f"--designs: unknown design {unknown[0] if unknown else '(none)'!r}; "
                         f"choose from {', '.join(design_names())}")
    loaded = _load(scenario, days, start, seed)
    results = [_run(loaded, name, quiet) for name in names]
    paths = write_comparison(results, out, report=report)
    console.print(f"[bold]{escape(loaded.name)}[/]: {len(loaded.time_index)} intervals, "
                  f"{len(results)} designs", highlight=False)
    for table in comparison_tables(results, console.width):
        console.print(table)
    console.print("written: " + ", ".join(str(p) for p in paths.values()))


def comparison_tables(results, width: int) -> list:
    """The KPIs of several designs as tables of whole columns that each fit ``width``
    characters: as many designs side by side as fit, the next ones in a table below, every
    table with the KPI names. Nothing is cut short or wrapped inside a cell."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    cells = {id(r): [_fmt(r.kpis.get(key)) for key, _ in SHOWN] for r in results}
    label_width = max(len(label) for _, label in SHOWN)
    pad = 3  # one space either side of a cell and the column separator
    groups: list[list] = [[]]
    used = label_width + pad
    for result in results:
        column = max(len(result.design), *map(len, cells[id(result)])) + pad
        if groups[-1] and used + column > width:
            groups.append([])
            used = label_width + pad
        groups[-1].append(result)
        used += column
    tables = []
    for group in groups:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("KPI", no_wrap=True)
        for result in group:
            table.add_column(escape(result.design), justify="right", no_wrap=True)
        for i, (_, label) in enumerate(SHOWN):
            table.add_row(escape(label), *(cells[id(r)][i] for r in group))
        tables.append(table)
    return tables
