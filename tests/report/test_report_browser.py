"""A reader opens report.html in a browser and sees the plots: headless Chromium, screenshots.

Every request the page makes is recorded: a self-contained report asks for nothing but itself.
"""

from __future__ import annotations

import pytest

from lemgrid.report import render_comparison, render_report

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report-year")]


def assert_plots_drawn(opened, n_plots: int) -> None:
    plots = opened.plots()
    assert len(plots) == n_plots
    for k, plot in enumerate(plots):
        assert plot["svgs"] >= 1 and plot["traces"] >= 1 and plot["marks"] >= 1, (k, plot)
    assert [url for url in opened.requests if not url.startswith(("file:", "data:", "blob:"))] \
        == []


def assert_not_blank(opened) -> None:
    page = opened.page
    whole = opened.image_stats(page.screenshot(full_page=True))
    assert whole["height"] > 2000, whole
    assert whole["distinct"] > 500 and whole["painted"] > 0.05, whole
    for k, element in enumerate(page.query_selector_all(".js-plotly-plot")):
        element.scroll_into_view_if_needed()
        stats = opened.image_stats(element.screenshot())
        assert stats["distinct"] > 30 and stats["painted"] > 0.02, (k, stats)


def test_blank_page_fails_the_checks(tmp_path, open_report):
    """The checks can fail: an empty plot container has no SVG and the page no colours."""
    path = tmp_path / "blank.html"
    path.write_text("<!DOCTYPE html><html><body><div class='js-plotly-plot'></div></body></html>")
    opened = open_report(path, 0)
    stats = opened.image_stats(opened.page.screenshot(full_page=True))
    assert stats["distinct"] <= 2 and stats["painted"] == 0.0
    with pytest.raises(AssertionError):
        assert_plots_drawn(opened, 1)
    with pytest.raises(AssertionError):
        assert_not_blank(opened)


def test_report_renders_in_chromium(tmp_path, rural_result, open_report):
    path = render_report(rural_result, tmp_path / "report.html")
    opened = open_report(path, 6)
    assert_plots_drawn(opened, 6)
    assert_not_blank(opened)
    # The collapsed bills table opens.
    opened.page.click("text=show the table")
    assert opened.page.is_visible("table.data")


def test_comparison_renders_in_chromium(tmp_path, rural_results, rural_comparison, open_report):
    path = render_comparison(rural_results, rural_comparison, tmp_path / "comparison.html")
    opened = open_report(path, 5)
    assert_plots_drawn(opened, 5)
    assert_not_blank(opened)


def test_a_year_renders_in_chromium(tmp_path, year_results, open_report):
    path = render_report(year_results[0], tmp_path / "year.html")
    opened = open_report(path, 6)
    assert_plots_drawn(opened, 6)
