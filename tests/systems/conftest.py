"""Headless Chromium for the systems' report checks (Debian's chromium driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

@pytest.fixture
def rendered(browser):
    """``rendered(path)``: the page of a report once every plot has drawn its SVG."""
    contexts = []

    def open_(path: Path):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto(path.resolve().as_uri())
        page.wait_for_function(
            "() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];"
            " return plots.length > 0 && plots.every(el => el.querySelector('.main-svg')); }",
            timeout=60_000)
        return page

    yield open_
    for context in contexts:
        context.close()
