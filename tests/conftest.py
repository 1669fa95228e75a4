"""Shared fixtures. Grids come from the simbench package (offline) through lemgrid's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return ROOT / "examples"


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser); one per test process,
    since Playwright's sync API cannot run two instances in one process."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: the browser tests need Debian's chromium; "
                    "run scripts/ensure-test-services.sh", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -e '.[test]' "
                    "(and run scripts/ensure-test-services.sh for chromium)", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Property tests explore the same examples on every run (reproducible CI); set
# HYPOTHESIS_PROFILE=explore to search new ones locally.

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
