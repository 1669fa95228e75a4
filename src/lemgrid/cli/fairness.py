"""``lemgrid fairness``: how a community's benefit is shared, by every allocation rule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, console, progress_bar, quiet_option, user_errors
from lemgrid.cli.simulate import SEED_HELP, START_HELP, _fmt, _load, _name, _run


@app.command()
@user_errors
def fairness(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario YAML (default: the built-in one)")] = None,
    design: Annotated[str, typer.Option(
        help="The design whose clearing is shared (its delivered positions and, for the "
             "market rule, its internal prices)")] = "community",
    days: Annotated[float | None, typer.Option(help="Override the scenario's days")] = None,
    start: Annotated[str | None, typer.Option(help=START_HELP)] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=2**63 - 1, help=SEED_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("out/fairness"),
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Share the benefit of a design's clearing by every allocation rule and compare them.

    The benefit is what pooling the members' delivered positions saves at the scenario's prices
    (lemgrid.settlement.fairness); the rules are the design's own prices, the marginal price,
    the mid-market rate, the supply-demand ratio, bill sharing and the Shapley value. Writes
    rules.csv (share better off, Gini, core check per rule), shares.csv (each member's share
    per rule [EUR]) and shares.html (a plot of them).
    """
    import numpy as np

    from lemgrid.settlement.bills import Prices
    from lemgrid.settlement.fairness import SharingGame, compare_rules

    loaded = _load(scenario, days, start, seed)
    result = _run(loaded, design, quiet)
    game = SharingGame.from_result(result, Prices.from_scenario(loaded))
    with progress_bar("rules: core checks", quiet) as progress:
        kpis, shares = compare_rules(game, result.price_eur_per_kwh,
                                     rng=np.random.default_rng(loaded.config.seed),
                                     progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    kpis.to_csv(out / "rules.csv")
    shares.to_csv(out / "shares.csv")
    name = _name(loaded, scenario)
    _plot(shares, out / "shares.html", f"{name}: {design}")

    from rich.table import Table

    table = Table(title=f"{name}, {design}: {game.n_members} members share "
                        f"{kpis.saving_eur.iloc[0]:,.2f} EUR")
    for name in ("rule", "better off", "worse off", "Gini", "in core", "core excess [EUR]"):
        table.add_column(name, justify="left" if name == "rule" else "right",
                         no_wrap=name == "rule")
    for rule, row in kpis.iterrows():
        table.add_row(str(rule), _fmt(row.share_better_off), _fmt(row.share_worse_off),
                      _fmt(None if np.isnan(row.gini) else row.gini),
                      {True: "yes", False: "no", None: "open"}[row.in_core],
                      _fmt(row.core_excess_eur))
    console.print(table)
    console.print(f"wrote {out / 'rules.csv'}, {out / 'shares.csv'}, {out / 'shares.html'}",
                  highlight=False)


def _plot(shares, path: Path, title: str) -> None:
    """Each member's share under each rule, members in the order of their Shapley value."""
    import plotly.graph_objects as go

    order = shares.sort_values("shapley").index
    figure = go.Figure([go.Scatter(x=list(order), y=shares.loc[order, rule], name=rule,
                                   mode="markers+lines") for rule in shares.columns])
    figure.update_layout(title=title, xaxis_title="member (by Shapley value)",
                         yaxis_title="share of the community's saving [EUR]")
    figure.write_html(path, include_plotlyjs="cdn")
