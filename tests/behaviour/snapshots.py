"""Outputs of the simulator kept from main before the refactor of issue 11 (bills, KPIs, DSO
activations and per-interval prices), so that a restructuring can be shown to change nothing.

Run ``python tests/behaviour/snapshots.py`` to write ``tests/data/behaviour_kept/*.json`` again:
only when a change of behaviour is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "tests" / "data" / "behaviour_kept"

#: (case name, scenario file, design or None for the scenario's own): every design on one small
#: community, the ZIP auction example, the IEEE 33 example and the review's systems whose DSO
#: markets run in a few seconds for a day.
CASES: list[tuple[str, str, str | None]] = [
    *[(f"lv-rural-community-{d}", "examples/lv-rural-community.yaml", d)
      for d in ("none", "uniform", "pay-as-bid", "continuous", "community",
                "community-constrained", "p2p")],
    ("lv-semiurban-zip-auction", "examples/lv-semiurban-zip-auction.yaml", None),
    ("ieee33-standard-profiles", "examples/ieee33-standard-profiles.yaml", None),
    *[(f"system-{s}", f"examples/systems/{s}.yaml", None)
      for s in ("empower", "piclo-flex", "dominoes", "pebble")],
    # iPower as it was saved (examples/systems/ipower.yaml has heat pumps since).
    ("system-ipower", "tests/data/behaviour_kept/system-ipower.yaml", None),
]

#: Cases whose clearing LP has many optimal solutions (PEBBLE: identical batteries behind one
#: transformer, flat night prices): which member's battery moves in which interval is a tie
#: that another HiGHS version or start basis breaks otherwise. Their community totals are kept
#: (see ``invariant``), not the split among members and intervals.
TIED = {"system-pebble"}

#: KPIs of how the outcome is shared among members and intervals (not kept for ``TIED`` cases).
DISTRIBUTIONAL_KPIS = {
    "gini_savings", "max_savings_eur", "min_savings_eur", "share_better_off",
    "share_worse_off", "self_consumption_participant_mean",
    "self_sufficiency_participant_mean", "imbalance_long_kwh", "imbalance_short_kwh",
    "peak_import_kw", "peak_export_kw"}

#: KPIs that measure the run, not its outcome.
VOLATILE_KPIS = {"seconds"}


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def snapshot(path: str, design: str | None) -> dict:
    """The outputs of one day of ``path`` simulated with ``design``, as plain JSON values."""
    import lemgrid.scenario
    import lemgrid.sim.runner

    scenario = lemgrid.scenario.load_scenario(ROOT / path, days=1)
    result = lemgrid.sim.runner.simulate(scenario, design)
    bills = result.bills()
    activations = result.tables.get("flex_activations")
    intervals = result.intervals()
    return {
        "design": result.design,
        "kpis": {k: _plain(v) for k, v in sorted(result.kpis.items())
                 if k not in VOLATILE_KPIS},
        "bills": [{k: _plain(v) for k, v in row.items()} for row in bills.to_dict("records")],
        "activations": [] if activations is None else [
            {k: _plain(v) for k, v in row.items()} for row in activations.to_dict("records")],
        "intervals": {col: [_plain(v) for v in intervals[col]]
                      for col in ("price_eur_per_kwh", "local_volume_kwh", "cost_eur",
                                  "bau_cost_eur", "metered_net_kw", "scheduled_net_kw")},
    }


def invariant(saved: dict) -> dict:
    """What every optimal solution of a ``TIED`` case has in common: the KPIs but the
    distributional ones, the bills' money totals (members' gross imports and exports depend
    on which of them moves), the per-interval prices and the day's totals of the other
    interval columns, the activations' count and total."""
    return {
        "design": saved["design"],
        "kpis": {k: v for k, v in saved["kpis"].items() if k not in DISTRIBUTIONAL_KPIS},
        "bills": {k: sum(row[k] for row in saved["bills"]) for k in saved["bills"][0]
                  if k.endswith("_eur")},
        "activations": {"count": len(saved["activations"]),
                        "total_kw": sum(row["kw"] for row in saved["activations"])},
        "intervals": {k: values if k == "price_eur_per_kwh" else sum(values)
                      for k, values in saved["intervals"].items()},
    }


def main(names: list[str]) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name, path, design in CASES:
        if names and name not in names:
            continue
        out = DATA_DIR / f"{name}.json"
        out.write_text(json.dumps(snapshot(path, design), indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")
        print(out.relative_to(ROOT), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
