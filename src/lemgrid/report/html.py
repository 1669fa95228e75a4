"""Assemble a self-contained HTML report: one file, plotly.js inlined once, readable offline."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lemgrid.errors import InputError
from lemgrid.report import figures
from lemgrid.report.tables import frame_table_html, headline_html, kpi_table_html, main_kpis
from lemgrid.sim.results import SimulationResult

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class Section:
    """One part of a report.

    Attributes
    ----------
    title : str
        Heading (also listed in the report's navigation bar).
    body : plotly.graph_objects.Figure or str
        A figure, or HTML inserted as it is (trusted: build it with escaping).
    caption : str
        How to read it (plain text, escaped).
    collapsed : bool
        Hide the body behind a "show" toggle (long tables).
    """

    title: str
    body: go.Figure | str
    caption: str = ""
    collapsed: bool = False


SectionLike = Section | tuple


def _as_section(item: SectionLike) -> Section:
    if isinstance(item, Section):
        return item
    if isinstance(item, tuple) and len(item) in (2, 3) and isinstance(item[0], str) \
            and isinstance(item[1], (go.Figure, str)):
        return Section(*item)
    raise InputError(f"report sections: each item must be a Section or a (title, plotly figure "
                     f"or HTML string[, caption]) tuple, got {item!r:.80}")


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("lemgrid.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def _write(path: Path, title: str, facts: list[tuple[str, str]], sections: Iterable[Section]
           ) -> Path:
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    from lemgrid import __version__

    rendered, anchors = [], set()
    for section in sections:
        anchor = re.sub(r"[^a-z0-9]+", "-", section.title.lower()).strip("-") or "section"
        while anchor in anchors:
            anchor += "-2"
        anchors.add(anchor)
        is_figure = isinstance(section.body, go.Figure)
        body = (section.body.to_html(full_html=False, include_plotlyjs=False,
                                     config=_PLOT_CONFIG)
                if isinstance(section.body, go.Figure) else section.body)
        rendered.append(dict(anchor=anchor, title=section.title, caption=section.caption,
                             body=Markup(body), is_figure=is_figure,
                             collapsed=section.collapsed))
    page = _environment().get_template("report.html.j2").render(
        title=title, facts=facts, sections=rendered, version=__version__,
        plotly_js=Markup(get_plotlyjs()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _horizon(result: SimulationResult) -> str:
    t = pd.DatetimeIndex(result.time_index)
    step = pd.Timedelta(hours=result.dt_h)
    days = len(t) * result.dt_h / 24.0
    return (f"{t[0]:%Y-%m-%d %H:%M} – {t[-1] + step:%Y-%m-%d %H:%M} "
            f"({days:g} days, {len(t):,} intervals of {step.total_seconds() / 60:g} min)")


def _check(result: SimulationResult) -> None:
    if not isinstance(result, SimulationResult):
        raise InputError(f"report: expected a SimulationResult, got {type(result).__name__}")
    if len(result.time_index) == 0:
        raise InputError(f"report: result of design {result.design!r} has no intervals")


def _nonconvergence_facts(labels: Sequence[str], results: Sequence[SimulationResult]
                          ) -> list[tuple[str, str]]:
    """A header line for every run whose delivered power flow did not converge somewhere."""
    facts = []
    for label, r in zip(labels, results, strict=True):
        failed = figures.nonconverged_intervals(r.vm_pu)
        if failed.any():
            t = pd.DatetimeIndex(r.time_index)[failed]
            first = ", ".join(f"{x:%Y-%m-%d %H:%M}" for x in t[:5])
            first += ", ..." if len(t) > 5 else ""
            facts.append((f"Power flow ({label})",
                          f"did not converge in {int(failed.sum()):,} of {len(failed):,} "
                          f"intervals ({first}): no voltages or loadings there; counted as "
                          "violations"))
    return facts


# --- one design -------------------------------------------------------------------------------

_CAPTIONS = {
    "headline": "Savings are against business-as-usual (retail import and feed-in, no local "
                "market); a participant is better off when it saves more than half a cent. Peak "
                "import is the highest power drawn through the substation transformer; "
                "violation intervals are those with a bus voltage or a branch loading outside "
                "the DSO's limits. Flexibility cost is what the DSO (and the TSO) paid for "
                "activated flexibility. Every KPI is in the table after the plots.",
    "kpis": "Key figures over the whole horizon. Money is what participants pay (negative: are "
            "paid); savings are against business-as-usual (retail import and feed-in, no local "
            "market). The key column names the value in kpis.json.",
    "price": "Price of energy traded inside the community. It should lie between the feed-in "
             "tariff (what a seller gets from the retailer) and the retail price (what a buyer "
             "pays the retailer); gaps are intervals without local trade.",
    "volume": "Energy exchanged between participants instead of with the retailer.",
    "transformer": "Import through the substation transformer (export is negative) in the AC "
                   "power flow of what was delivered, with the market design and under "
                   "business-as-usual. Lower peaks in both directions relieve the transformer; "
                   "shaded bands span the minimum to maximum within each bucket.",
    "heatmap": "Each row is a bus, each column a time bucket; white is 1 p.u., red above and "
               "blue below nominal. When buckets hold several intervals, a cell shows the "
               "interval farthest from nominal.",
    "envelope": "Lowest and highest voltage over all buses; outside the dotted limits the DSO's "
                "voltage band is violated.",
    "savings": "What each participant saves over the horizon against business-as-usual "
               "(negative: the market made it pay more), sorted.",
    "bills": "One row per participant over the horizon (the rows of bills.csv).",
}


def design_sections(result: SimulationResult) -> list[Section]:
    """The standard sections of a one-design report: headline figures, six plots, the full KPI
    table and the bills."""
    t, dt_h, design = result.time_index, result.dt_h, result.design
    p_kw = {design: result.transformer_p_kw}
    if design != "none":
        p_kw[figures.BAU_LABEL] = result.bau_transformer_p_kw
    bills = result.bills()
    kpis = (kpi_table_html({design: result.kpis}) if result.kpis
            else "<p>This result carries no KPIs.</p>")
    return [
        Section("Headline figures", headline_html({design: result.kpis}),
                _CAPTIONS["headline"]),
        Section("Local market price",
                figures.price_figure(t, dt_h, {design: result.price_eur_per_kwh}, result.tariffs),
                _CAPTIONS["price"]),
        Section("Locally traded volume",
                figures.volume_figure(t, dt_h, {design: result.local_volume_kwh}),
                _CAPTIONS["volume"]),
        Section("Transformer power", figures.transformer_figure(t, dt_h, p_kw),
                _CAPTIONS["transformer"]),
        Section("Voltage per bus",
                figures.voltage_heatmap_figure(t, dt_h, result.vm_pu, result.bus_names,
                                               result.limits),
                _CAPTIONS["heatmap"]),
        Section("Voltage envelope",
                figures.voltage_envelope_figure(t, dt_h, {design: result.vm_pu}, result.limits),
                _CAPTIONS["envelope"]),
        Section("Savings per participant",
                figures.savings_figure({design: bills.set_index("participant")["savings_eur"]}),
                _CAPTIONS["savings"]),
        Section("Key performance indicators", kpis, _CAPTIONS["kpis"]),
        Section("Bills", frame_table_html(bills), _CAPTIONS["bills"], collapsed=True),
    ]


def render_report(result: SimulationResult, path: str | Path, *,
                  sections: Sequence[SectionLike] | None = None) -> Path:
    """Write the HTML report of one simulated design.

    Parameters
    ----------
    result : SimulationResult
    path : str or Path
        File to write (parent folders are created).
    sections : list of Section or (title, figure or HTML[, caption]) tuples, optional
        Extra sections appended after the standard ones (e.g. a traffic-light timeline).

    Returns
    -------
    Path
        ``path``: one self-contained HTML file (plotly.js inlined, no network access needed).
    """
    _check(result)
    extra = [_as_section(s) for s in sections or ()]
    facts = [("Scenario", result.scenario), ("Design", result.design), ("Grid", result.grid),
             ("Horizon", _horizon(result)),
             ("Participants", f"{len(result.participant_ids):,} at "
                              f"{len(set(map(str, result.participant_bus))):,} buses "
                              f"(grid: {len(result.bus_names):,} buses)")]
    if result.seconds:
        facts.append(("Run time", f"{result.seconds:,.1f} s"))
    facts += _nonconvergence_facts([result.design], [result])
    title = f"lemgrid report: {result.scenario}, design {result.design}"
    return _write(Path(path), title, facts, [*design_sections(result), *extra])


# --- several designs --------------------------------------------------------------------------


def _labels(results: Sequence[SimulationResult]) -> list[str]:
    """Design names, made unique (the same design may run twice with other options)."""
    labels: list[str] = []
    for r in results:
        label, k = str(r.design), 2
        while label in labels:
            label, k = f"{r.design} #{k}", k + 1
        labels.append(label)
    return labels


def _comparison_rows(comparison: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The comparison table indexed by design, rows in the order of the results if they match."""
    table = comparison.set_index("design") if "design" in comparison.columns else comparison
    table.index = [str(i) for i in table.index]
    if set(labels) <= set(table.index):
        table = table.loc[labels]
    return table


def render_comparison(results: Sequence[SimulationResult], comparison: pd.DataFrame,
                      path: str | Path, *, sections: Sequence[SectionLike] | None = None) -> Path:
    """Write a side-by-side HTML report of several designs on the same scenario.

    Parameters
    ----------
    results : list of SimulationResult
        One per design, all on the same time index.
    comparison : pandas.DataFrame
        One row per design (a ``design`` column or the index names it), KPIs as columns (the
        content of comparison.csv).
    path : str or Path
        File to write.
    sections : list of Section or (title, figure or HTML[, caption]) tuples, optional
        Extra sections appended after the standard ones.

    Returns
    -------
    Path
    """
    results = list(results)
    if not results:
        raise InputError("render_comparison: results must hold at least one SimulationResult")
    for r in results:
        _check(r)
    first = results[0]
    for r in results[1:]:
        if len(r.time_index) != len(first.time_index) or \
                not np.array_equal(np.asarray(r.time_index), np.asarray(first.time_index)):
            raise InputError(
                f"render_comparison: designs must share the horizon; {first.design!r} has "
                f"{len(first.time_index)} intervals from {first.time_index[0]}, {r.design!r} has "
                f"{len(r.time_index)} from {r.time_index[0]}")
    if not isinstance(comparison, pd.DataFrame):
        raise InputError(f"render_comparison: comparison must be a pandas DataFrame, "
                         f"got {type(comparison).__name__}")
    labels = _labels(results)
    table = _comparison_rows(comparison, labels)
    t, dt_h = first.time_index, first.dt_h
    by = dict(zip(labels, results))
    p_kw = {k: r.transformer_p_kw for k, r in by.items()}
    p_kw[figures.BAU_LABEL] = first.bau_transformer_p_kw
    kpi_columns = {str(d): {str(kpi): value for kpi, value in row.items()}
                   for d, row in table.iterrows()}
    standard = [
        Section("Headline figures by design", headline_html(kpi_columns),
                "One row per design. " + _CAPTIONS["headline"]),
        Section("Main KPIs per design", figures.kpi_bars_figure(table, main_kpis(table)),
                "The KPIs that decide between designs, one bar per design."),
        Section("Local market price by design",
                figures.price_figure(t, dt_h, {k: r.price_eur_per_kwh for k, r in by.items()},
                                     first.tariffs),
                _CAPTIONS["price"]),
        Section("Transformer power by design",
                figures.transformer_figure(t, dt_h, p_kw, bands=False),
                "Import through the substation transformer (export negative) for each design "
                "and business-as-usual (grey)."),
        Section("Voltage envelope by design",
                figures.voltage_envelope_figure(t, dt_h, {k: r.vm_pu for k, r in by.items()},
                                                first.limits),
                "Highest (solid) and lowest (dashed) bus voltage of each design; outside the "
                "dotted limits the DSO's voltage band is violated."),
        Section("Savings per participant by design",
                figures.savings_figure({k: r.bills().set_index("participant")["savings_eur"]
                                        for k, r in by.items()}),
                "Savings of each participant against business-as-usual, one bar per design; "
                "participants sorted by their mean saving."),
        Section("Key performance indicators by design", kpi_table_html(kpi_columns),
                "One column per design (comparison.csv has one row per design). "
                + _CAPTIONS["kpis"]),
        Section("Comparison table",
                frame_table_html(comparison if "design" in comparison.columns
                                 else comparison.rename_axis("design").reset_index()),
                "comparison.csv as written.", collapsed=True),
    ]
    extra = [_as_section(s) for s in sections or ()]
    facts = [("Scenario", first.scenario), ("Designs", ", ".join(labels)), ("Grid", first.grid),
             ("Horizon", _horizon(first)),
             ("Participants", f"{len(first.participant_ids):,}")]
    facts += _nonconvergence_facts(labels, results)
    title = f"lemgrid comparison: {first.scenario}, {len(results)} designs"
    return _write(Path(path), title, facts, [*standard, *extra])
