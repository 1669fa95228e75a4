"""``lemgrid joint-flex``: energy and the DSO's flexibility from the same batteries, in one
clearing against the sequential markets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, console, user_errors
from lemgrid.cli.simulate import _fmt, _load, _name


@app.command("joint-flex")
@user_errors
def joint_flex(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario YAML with batteries (default: the built-in one)")] = None,
    day: Annotated[int, typer.Option(min=0, help="Day of the horizon (0: the first)")] = 0,
    need_up_kw: Annotated[float, typer.Option(
        min=0.0, help="The DSO's need for up capacity in the window [kW]")] = 10.0,
    need_down_kw: Annotated[float, typer.Option(
        min=0.0, help="The DSO's need for down capacity in the window [kW]")] = 0.0,
    window: Annotated[str, typer.Option(
        help="The DSO's daily window FROM-TO in the grid's local time")] = "17:00-21:00",
    alternative: Annotated[float, typer.Option(
        min=0.0, help="What the DSO pays per kW and hour it does not get from the "
                      "community [EUR/kW/h]")] = 0.3,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/joint-flex"),
) -> None:
    """Clear the day's energy and the DSO's need for capacity on the members' batteries
    together, and sequentially (energy first, the DSO takes what is left, as today's markets):
    energy cost, what the DSO pays elsewhere, system cost (lemgrid.market.joint). Writes
    clearings.csv.
    """
    from lemgrid.errors import InputError
    from lemgrid.sim.joint import compare_energy_flexibility, flex_day

    bounds = window.split("-")
    if len(bounds) != 2:
        raise InputError(f"--window: {window!r} is not FROM-TO (e.g. 17:00-21:00)")
    loaded = _load(scenario, None)
    try:
        problem = flex_day(loaded, day, need_up_kw, need_down_kw, (bounds[0], bounds[1]),
                           alternative)
    except InputError as exc:
        if exc.args and str(exc).startswith("window"):
            raise InputError(f"--{exc}") from None
        raise
    table = compare_energy_flexibility(problem)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "clearings.csv")

    from rich.table import Table

    name = _name(loaded, scenario)
    grid = Table(title=f"{name}, day {day}: the DSO needs {need_up_kw:g} kW up, "
                       f"{need_down_kw:g} kW down over {window} [EUR, kWh]")
    shown = [("energy_cost_eur", "energy"), ("alternative_cost_eur", "elsewhere"),
             ("system_cost_eur", "system"), ("held_up_kwh", "held up"),
             ("held_down_kwh", "held down")]
    grid.add_column("clearing", no_wrap=True)
    for _, label in shown:
        grid.add_column(label, justify="right")
    for clearing, row in table.iterrows():
        grid.add_row(str(clearing), *(_fmt(float(row[c])) for c, _ in shown))
    console.print(grid)
    console.print(f"wrote {out / 'clearings.csv'}", highlight=False)
