"""``lemgrid powerflow``: AC power flow over every interval of a horizon."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, check_horizon, console, progress_bar, quiet_option, user_errors
from lemgrid.errors import InputError


@app.command()
@user_errors
def powerflow(
    grid: Annotated[str, typer.Argument(
        help="simbench:CODE, ieee33, a pandapower .json file, or a scenario .yaml file")],
    start: Annotated[str | None, typer.Option(help="First interval (e.g. 2016-06-01); default: "
                                                   "the start of the profiles")] = None,
    days: Annotated[float | None, typer.Option(help="Number of days; default: to the end of the "
                                                    "profiles (a whole year for SimBench)")] = None,
    resolution: Annotated[str, typer.Option(help="Interval length: 5min, 15min, 30min, 60min")
                          ] = "15min",
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/powerflow"),
    vm_min_pu: Annotated[float, typer.Option(help="Lower voltage limit [p.u.]")] = 0.90,
    vm_max_pu: Annotated[float, typer.Option(help="Upper voltage limit [p.u.]")] = 1.10,
    max_loading_percent: Annotated[float, typer.Option(help="Loading limit [%]")] = 100.0,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Batched AC power flow of a grid over a horizon.

    Writes vm_pu.parquet, loading_percent.parquet and summary.json.

    SimBench grids use their year of 15-minute load and PV profiles; grids without profiles
    (ieee33, most pandapower files) run their single published snapshot.
    """
    from lemgrid.grid.kpis import GridLimits
    from lemgrid.dso.grid_check import powerflow_study, write_powerflow_outputs

    t0 = time.perf_counter()
    check_horizon(start, days)
    limits = GridLimits(vm_min_pu, vm_max_pu, max_loading_percent)
    if not vm_min_pu < vm_max_pu:
        raise InputError(f"--vm-min-pu ({vm_min_pu}) must be below --vm-max-pu ({vm_max_pu})")
    with progress_bar("AC power flow", quiet) as progress:
        study = powerflow_study(grid, start=start, days=days, resolution=resolution,
                                limits=limits, progress=progress)
    summary = write_powerflow_outputs(study, out)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"power flow: {summary['grid']}", show_header=False, box=None)
    rows = [
        ("intervals", f"{summary['intervals']:,} ({summary['resolution']})"),
        ("losses", f"{summary['losses_kwh']:,.1f} kWh" if "losses_kwh" in summary
         else f"{summary['losses_kw']:,.3f} kW"),
        ("min voltage", f"{summary['vm_min_pu']:.4f} p.u. at bus {summary['vm_min_bus']}"),
        ("max voltage", f"{summary['vm_max_pu']:.4f} p.u. at bus {summary['vm_max_bus']}"),
        ("max loading", f"{summary['max_loading_percent']:.1f} % ({summary['max_loading_branch']})"),
        ("voltage violations", f"{summary['voltage_violation_intervals']} intervals"),
        ("overloads", f"{summary['overload_intervals']} intervals"),
        ("not converged", f"{summary['nonconverged_intervals']} intervals"),
        ("peak import / export", f"{summary['peak_import_kw']:,.1f} / "
                                 f"{summary['peak_export_kw']:,.1f} kW"),
        ("time", f"{summary['seconds']:.2f} s"),
        ("written to", str(out)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
