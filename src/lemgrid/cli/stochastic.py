"""``lemgrid stochastic``: a community's day-ahead schedule under uncertainty, risk-averse,
against the deterministic one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, console, progress_bar, quiet_option, user_errors
from lemgrid.cli.simulate import SEED_HELP, _fmt, _load, _name


@app.command()
@user_errors
def stochastic(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario YAML with batteries (default: the built-in one)")] = None,
    day: Annotated[int, typer.Option(min=0, help="Day of the horizon (0: the first)")] = 0,
    scenarios: Annotated[int, typer.Option(
        min=1, max=500, help="Scenarios of the members' load and PV to schedule for")] = 30,
    judged: Annotated[int, typer.Option(
        min=1, max=5000, help="Out-of-sample scenarios the schedules are judged on")] = 200,
    risk: Annotated[str, typer.Option(
        help="Risk weights beta in [0, 1] of the stochastic schedules, comma-separated "
             "(objective (1 - beta) E[cost] + beta CVaR)")] = "0,0.5,0.9",
    alpha: Annotated[float, typer.Option(
        min=0.5, max=0.99, help="CVaR level: the mean of the worst 1 - alpha of the "
                                "scenarios")] = 0.9,
    seed: Annotated[int | None, typer.Option(min=0, max=2**63 - 1, help=SEED_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/stochastic"),
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Schedule a community's day with a two-stage stochastic LP (day-ahead position, batteries
    and imbalance at delivery), risk-neutral and risk-averse (CVaR), against the deterministic
    schedule on the forecast: expected cost, CVaR, imbalance and AC violations on the same
    realised profiles (lemgrid.market.stochastic). Writes schedules.csv.
    """
    from lemgrid.errors import InputError
    from lemgrid.sim.stochastic import compare_schedules

    try:
        weights = [float(x) for x in risk.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--risk: {risk!r} is not a comma-separated list of numbers") from None
    if not weights or not all(0 <= w <= 1 for w in weights):
        raise InputError(f"--risk: {risk!r}: each risk weight must be in [0, 1]")
    loaded = _load(scenario, None, None, seed)
    with progress_bar("schedules", quiet) as progress:
        table = compare_schedules(loaded, day, scenarios, judged, weights, alpha, seed,
                                  progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "schedules.csv")

    from rich.table import Table

    shown = [("expected_cost_eur", "E cost"), ("cvar_eur", "CVaR"),
             ("judged_expected_cost_eur", "out E cost"), ("judged_cvar_eur", "out CVaR"),
             ("judged_imbalance_kwh", "imb. kWh"), ("judged_violation_intervals", "viol."),
             ("vss_eur", "VSS")]
    name = _name(loaded, scenario)
    grid = Table(title=f"{name}, day {day}: EUR on {scenarios} scenarios and {judged} out of "
                       f"sample (out); CVaR at {alpha:g}")
    grid.add_column("schedule", no_wrap=True)
    for _, label in shown:
        grid.add_column(label, justify="right")
    for schedule, row in table.iterrows():
        grid.add_row(str(schedule).replace("stochastic ", ""),
                     *(_fmt(None if row[c] != row[c] else float(row[c])) for c, _ in shown))
    console.print(grid)
    console.print(f"wrote {out / 'schedules.csv'}", highlight=False)
