"""The HTML files: self-contained, every section and KPI present, extra sections, bad input."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from lemgrid.errors import InputError
from lemgrid.report import Section, render_comparison, render_report

# Headline figures and plots first, the full KPI table after them (issue 11 item 7).
REPORT_TITLES = ["Headline figures", "Local market price", "Locally traded volume",
                 "Transformer power", "Voltage per bus", "Voltage envelope",
                 "Savings per participant", "Key performance indicators", "Bills"]
COMPARISON_TITLES = ["Headline figures by design", "Main KPIs per design",
                     "Local market price by design", "Transformer power by design",
                     "Voltage envelope by design", "Savings per participant by design",
                     "Key performance indicators by design", "Comparison table"]


class _Page(HTMLParser):
    """Tags with their attributes, headings, and the text of inline scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.h2: list[str] = []
        self.scripts: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("h2", "script") else None
        if tag == "script":
            self.scripts.append("")

    def handle_data(self, data):
        if self._in == "h2":
            self.h2.append(data.strip())
        elif self._in == "script":
            self.scripts[-1] += data

    def handle_endtag(self, tag):
        self._in = None


def assert_self_contained(text: str) -> _Page:
    page = _Page(text)
    external = [(tag, attrs) for tag, attrs in page.tags
                if any(str(attrs.get(a) or "").startswith(("http:", "https:", "//"))
                       for a in ("src", "href", "data"))
                and not (tag == "a")]
    assert external == [], f"external resources: {external}"
    assert not [attrs for tag, attrs in page.tags if tag == "script" and attrs.get("src")]
    plotly_js = get_plotlyjs()
    assert sum(s.count(plotly_js[:2000]) for s in page.scripts) == 1   # inlined, once
    return page


def test_report_is_self_contained_with_every_section_and_kpi(tmp_path, rural_result):
    path = render_report(rural_result, tmp_path / "out" / "report.html")
    assert path == tmp_path / "out" / "report.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    page = assert_self_contained(text)
    assert page.h2 == REPORT_TITLES
    assert text.count("Plotly.newPlot(") == 6
    for key in rural_result.kpis:
        assert f"<code>{key}</code>" in text
    for word in (rural_result.scenario, rural_result.design, rural_result.grid,
                 "2016-06-06 00:00 – 2016-06-08 00:00", "192 intervals of 15 min"):
        assert word in text
    bills = rural_result.bills()
    assert all(f"<td>{p}</td>" in text for p in bills["participant"])
    assert f"{bills['savings_eur'].sum():,.2f}" in text   # savings_eur KPI, formatted


def test_extra_sections_are_appended(tmp_path, rural_result):
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    path = render_report(rural_result, tmp_path / "report.html", sections=[
        ("Traffic light", fig),
        ("DSO notes", "<p id='dso-note'>all green</p>", "a caption"),
        Section("More", "<b>x</b>", collapsed=True),
    ])
    text = path.read_text(encoding="utf-8")
    assert _Page(text).h2 == [*REPORT_TITLES, "Traffic light", "DSO notes", "More"]
    assert text.count("Plotly.newPlot(") == 7
    assert "<p id='dso-note'>all green</p>" in text and "a caption" in text


@pytest.mark.parametrize("bad", [("title only",), ("t", 3), "just text", (1, "<p/>")])
def test_bad_sections_are_rejected(tmp_path, rural_result, bad):
    with pytest.raises(InputError, match="report sections"):
        render_report(rural_result, tmp_path / "report.html", sections=[bad])


def test_business_as_usual_without_any_local_trade(tmp_path, rural_results):
    none = rural_results[1]
    text = render_report(none, tmp_path / "none.html").read_text(encoding="utf-8")
    assert "no local trade in the horizon" in text
    assert text.count("Plotly.newPlot(") == 6


def test_empty_result_is_an_input_error(tmp_path, rural_result):
    empty = dataclasses.replace(rural_result, time_index=rural_result.time_index[:0])
    with pytest.raises(InputError, match="no intervals"):
        render_report(empty, tmp_path / "report.html")


def test_comparison_is_self_contained_with_every_design(tmp_path, rural_results,
                                                         rural_comparison):
    path = render_comparison(rural_results, rural_comparison, tmp_path / "cmp" / "report.html")
    text = path.read_text(encoding="utf-8")
    page = assert_self_contained(text)
    assert page.h2 == COMPARISON_TITLES
    assert text.count("Plotly.newPlot(") == 5
    for column in rural_comparison.columns:
        if column != "design":
            assert f"<code>{column}</code>" in text
    for design in ("mid-market", "none"):
        assert f"<th class='num'>{design}</th>" in text


def test_comparison_with_designs_as_index_and_missing_kpis(tmp_path, rural_results,
                                                           rural_comparison):
    table = rural_comparison.set_index("design")[["peak_import_kw", "losses_kwh"]]
    text = render_comparison(rural_results, table, tmp_path / "cmp.html").read_text("utf-8")
    assert "Peak import [kW]" in text and "Losses [kWh]" in text
    assert "Savings [EUR]" not in text
    empty = rural_comparison[["design"]]
    text = render_comparison(rural_results, empty, tmp_path / "cmp2.html").read_text("utf-8")
    assert "none of the main KPIs is in the comparison table" in text


def test_same_design_twice_gets_distinct_labels(tmp_path, rural_result):
    comparison = pd.DataFrame([rural_result.kpis, rural_result.kpis])
    text = render_comparison([rural_result, rural_result], comparison,
                             tmp_path / "twice.html").read_text("utf-8")
    assert "mid-market, mid-market #2" in text


def test_comparison_needs_one_horizon(tmp_path, rural_results, rural_comparison):
    later = dataclasses.replace(rural_results[1],
                                time_index=rural_results[1].time_index + np.timedelta64(1, "D"))
    with pytest.raises(InputError, match="share the horizon"):
        render_comparison([rural_results[0], later], rural_comparison, tmp_path / "x.html")
    with pytest.raises(InputError, match="at least one"):
        render_comparison([], rural_comparison, tmp_path / "x.html")


@pytest.mark.slow
@pytest.mark.xdist_group("report-year")   # one worker builds the year once for this and the browser
def test_a_year_on_a_large_feeder_stays_small(tmp_path, year_results):
    """35,136 intervals x 111 buses x 104 participants: below 10 MB, at most 2,000 columns."""
    year = year_results[0]
    assert year.vm_pu.shape == (35136, 111)
    path = render_report(year, tmp_path / "year.html")
    size_mb = path.stat().st_size / 1e6
    assert size_mb < 10.0, f"{size_mb:.1f} MB"
    text = path.read_text("utf-8")
    assert "(mean per 6 h)" in text and "max per 6 h); limits" in text  # "/" is JSON-escaped
    comparison = pd.DataFrame([{"design": r.design, **r.kpis} for r in year_results])
    path = render_comparison(year_results, comparison, tmp_path / "cmp.html")
    assert path.stat().st_size / 1e6 < 10.0


def test_names_from_the_scenario_are_escaped(tmp_path, rural_result):
    odd = dataclasses.replace(rural_result, scenario="<script>alert(1)</script>")
    text = render_report(odd, tmp_path / "odd.html").read_text("utf-8")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def _section(text: str, title: str) -> str:
    """The HTML of one report section, from its heading to the next section."""
    start = text.index(f"<h2>{title}</h2>")
    return text[start:text.index("</section>", start)]


def test_report_opens_with_the_headline_figures_and_ends_with_the_kpi_table(tmp_path,
                                                                           rural_result):
    text = render_report(rural_result, tmp_path / "r.html").read_text("utf-8")
    kpis = rural_result.kpis
    headline = _section(text, "Headline figures")
    assert f"{kpis['savings_eur']:,.2f} EUR" in headline
    assert f"{100 * kpis['share_better_off']:.1f} %" in headline
    assert f"{kpis['peak_import_kw']:,.2f} kW" in headline
    assert f"<div class='card-value'>{kpis['voltage_violation_intervals']}</div>" in headline
    assert "no flexibility market" in headline  # a scenario without a dso: part
    first_plot = text.index("Plotly.newPlot(")
    last_plot = text.rindex("Plotly.newPlot(")
    assert text.index("<h2>Headline figures</h2>") < first_plot
    assert last_plot < text.index("<h2>Key performance indicators</h2>")


def test_comparison_opens_with_one_headline_row_per_design(tmp_path, rural_results,
                                                          rural_comparison):
    text = render_comparison(rural_results, rural_comparison, tmp_path / "c.html").read_text()
    headline = _section(text, "Headline figures by design")
    for result in rural_results:
        assert f"<tr><td>{result.design}</td>" in headline
        assert f"{result.kpis['savings_eur']:,.2f} EUR" in headline
    assert text.index("<h2>Headline figures by design</h2>") < text.index("Plotly.newPlot(")
    assert text.rindex("Plotly.newPlot(") < text.index(
        "<h2>Key performance indicators by design</h2>")


def test_empty_plots_say_why(tmp_path, rural_results):
    none = rural_results[1]
    text = render_report(none, tmp_path / "none.html").read_text("utf-8")
    volume = _section(text, "Locally traded volume")
    savings = _section(text, "Savings per participant")
    assert "design 'none' has no local market" in volume
    assert "design 'none' is business-as-usual itself" in savings
    diverged = dataclasses.replace(none, vm_pu=np.full_like(none.vm_pu, np.nan),
                                   transformer_p_kw=np.full_like(none.transformer_p_kw, np.nan))
    text = render_report(diverged, tmp_path / "nan.html").read_text("utf-8")
    assert "the power flow converged in no interval" in _section(text, "Voltage envelope")
    assert "the power flow converged in no interval" in _section(text, "Transformer power")
    # A run with trade draws no such note.
    text = render_report(rural_results[0], tmp_path / "trade.html").read_text("utf-8")
    assert "no local trade" not in text and "no savings and no losses" not in text
