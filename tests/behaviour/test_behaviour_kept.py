"""Behaviour kept (issue 11): the simulator gives the bills, KPIs, DSO activations and
per-interval prices saved from main before the refactor, to the cent (0.01 EUR, kWh, kW and
%; 1e-4 for prices, voltages and shares)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("snapshots",
                                               Path(__file__).with_name("snapshots.py"))
snapshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(snapshots)


def _tolerance(key: str) -> float:
    if key.endswith(("_eur", "_kwh", "_kw", "_percent")) and "per_kwh" not in key:
        return 0.01
    return 1e-4  # prices, voltages, shares


def _compare(expected, actual, where: str, errors: list[str], key: str = "") -> None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            errors.append(f"{where}: keys {sorted(expected)} != "
                          f"{sorted(actual) if isinstance(actual, dict) else actual!r}")
            return
        for k in expected:
            _compare(expected[k], actual[k], f"{where}.{k}", errors, k)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            errors.append(f"{where}: {len(expected)} rows saved, "
                          f"{len(actual) if isinstance(actual, list) else actual!r} now")
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _compare(e, a, f"{where}[{i}]", errors, key)
    elif isinstance(expected, float) and not isinstance(expected, bool):
        if not isinstance(actual, int | float) or isinstance(actual, bool) or not math.isclose(
                expected, actual, rel_tol=0, abs_tol=_tolerance(key)):
            errors.append(f"{where}: saved {expected!r}, now {actual!r}")
    elif expected != actual and not (isinstance(expected, int) and isinstance(actual, float)
                                     and math.isclose(expected, actual, abs_tol=_tolerance(key))):
        errors.append(f"{where}: saved {expected!r}, now {actual!r}")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "path", "design"), snapshots.CASES,
                         ids=[c[0] for c in snapshots.CASES])
def test_outputs_are_those_saved_from_main(name, path, design):
    saved_file = snapshots.DATA_DIR / f"{name}.json"
    assert saved_file.exists(), f"{saved_file} missing: run python tests/behaviour/snapshots.py"
    saved = json.loads(saved_file.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(snapshots.snapshot(path, design)))
    if name in snapshots.TIED:
        saved, now = snapshots.invariant(saved), snapshots.invariant(now)
    errors: list[str] = []
    _compare(saved, now, name, errors)
    assert not errors, f"{len(errors)} differences, first: " + "; ".join(errors[:5])


def test_the_comparison_catches_a_change_of_one_cent():
    errors: list[str] = []
    _compare({"bills": [{"cost_eur": 1.0}]}, {"bills": [{"cost_eur": 1.011}]}, "x", errors)
    assert errors and "cost_eur" in errors[0]
    errors = []
    _compare({"bills": [{"cost_eur": 1.0}]}, {"bills": [{"cost_eur": 1.004}]}, "x", errors)
    assert not errors
