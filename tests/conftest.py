"""Shared fixtures. Grids come from the simbench package (offline) through lemgrid's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return ROOT / "examples"


# Property tests explore the same examples on every run (reproducible CI); set
# HYPOTHESIS_PROFILE=explore to search new ones locally.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
