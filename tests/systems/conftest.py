"""Headless Chromium for the systems' report checks (Debian's chromium driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """A browser for the whole session (never a downloaded one)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: the report checks need Debian's chromium; run "
                    "scripts/ensure-test-services.sh", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -e '.[test]'",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def rendered(chromium):
    """``rendered(path)``: the page of a report once every plot has drawn its SVG."""
    contexts = []

    def open_(path: Path):
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
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
