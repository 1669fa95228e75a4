"""``lemgrid optimize``: a market design cleared as one session over the whole horizon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, progress_bar, quiet_option, user_errors
from lemgrid.cli.simulate import SEED_HELP, START_HELP, _load, print_result


def optimize_design(scenario, design: str | None, network: str | None) -> str:
    """The design ``optimize`` runs: ``--design`` (default: the scenario's), with ``--network
    constrained`` the community within the grid's limits (``community-constrained``) and
    ``--network ignore`` the community without them.

    Raises
    ------
    InputError
        For an unknown design or ``--network`` value, or ``--network`` with a design that has no
        such choice.
    NotBuiltError
        For ``p2p`` within the grid's limits.
    """
    from lemgrid.errors import InputError, NotBuiltError
    from lemgrid.sim.runner import resolve_design

    if network is not None and network not in ("ignore", "constrained"):
        raise InputError(f"--network must be 'ignore' or 'constrained', got {network!r}")
    name = resolve_design(scenario, design)
    if network is None:
        return name
    if name == "p2p":
        if network == "constrained":
            raise NotBuiltError("the p2p design clears without grid limits; use --network "
                                "ignore (the community design clears within them)")
        return name
    if name not in ("community", "community-constrained"):
        raise InputError(f"--network applies to the community and p2p designs, not {name!r}")
    return "community-constrained" if network == "constrained" else "community"


@app.command()
@user_errors
def optimize(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file")],
    design: Annotated[str | None, typer.Option(
        help="A registered design (lemgrid.designs; default: the scenario's market.design)")
    ] = None,
    network: Annotated[str | None, typer.Option(
        help="ignore or constrained: the community within the grid's limits with DLMPs "
             "(community-constrained; default: the scenario's market.network)")] = None,
    days: Annotated[float | None, typer.Option(help="Override the scenario's days")] = None,
    start: Annotated[str | None, typer.Option(help=START_HELP)] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=2**63 - 1, help=SEED_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/optimize"),
    report: Annotated[bool, typer.Option(help="Write report.html")] = True,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Clear the whole horizon as one session (perfect foresight over it), then deliver,
    settle and check it in AC like ``simulate``.

    Writes the files of ``simulate`` (kpis.json, bills.csv, intervals.parquet,
    participant_intervals.parquet, report.html), with dlmp_components.parquet for
    community-constrained and p2p_trades.parquet for p2p.
    """
    from lemgrid.sim.outputs import write_simulation
    from lemgrid.sim.runner import optimize as optimize_horizon

    loaded = _load(scenario, days, start, seed)
    name = optimize_design(loaded, design, network)
    with progress_bar(f"{name}: one session of {len(loaded.time_index)} intervals",
                      quiet) as progress:
        result = optimize_horizon(loaded, name, progress=progress)
    print_result(result, write_simulation(result, out, report=report))
