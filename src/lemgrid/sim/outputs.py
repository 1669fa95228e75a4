"""Files of a simulation: kpis.json, bills.csv, intervals.parquet, participant_intervals.parquet,
the result's tables (the designs' as Parquet, the DSO's as CSV) and report.html; and of a comparison:
comparison.csv and a side-by-side report.html."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lemgrid.sim.results import SimulationResult


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


#: The designs' tables, with a row per interval and participant, bus or pair (a year of a large
#: feeder: millions of rows), written as Parquet like participant_intervals; the DSO's as CSV.
PARQUET_TABLES = frozenset({"orders", "trades", "dlmp_components", "p2p_trades"})


def write_simulation(result: SimulationResult, out: Path, report: bool = True) -> dict[str, Path]:
    """Write the files of one run; returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"kpis": out / "kpis.json", "bills": out / "bills.csv",
             "intervals": out / "intervals.parquet",
             "participant_intervals": out / "participant_intervals.parquet"}
    kpis = {"scenario": result.scenario, "grid": result.grid,
            "start": str(result.time_index[0]), **result.kpis}
    paths["kpis"].write_text(json.dumps({k: _jsonable(v) for k, v in kpis.items()}, indent=2)
                             + "\n")
    result.bills().to_csv(paths["bills"], index=False, float_format="%.6f")
    result.intervals().to_parquet(paths["intervals"])
    result.participant_intervals().to_parquet(paths["participant_intervals"], index=False)
    for name, table in result.tables.items():
        if name in PARQUET_TABLES:
            paths[name] = out / f"{name}.parquet"
            table.to_parquet(paths[name], index=False)
        else:
            paths[name] = out / f"{name}.csv"
            table.to_csv(paths[name], index=False)
    if report:
        from lemgrid.report import render_report
        from lemgrid.report.dso import dso_sections

        paths["report"] = render_report(result, out / "report.html",
                                        sections=dso_sections(result.tables, result.dt_h))
    return paths


def comparison_table(results: list[SimulationResult]) -> pd.DataFrame:
    """One row per design, the scalar KPIs as columns."""
    rows = [{k: _jsonable(v) for k, v in r.kpis.items()} for r in results]
    return pd.DataFrame(rows).set_index("design")


def write_comparison(results: list[SimulationResult], out: Path, report: bool = True
                     ) -> dict[str, Path]:
    """comparison.csv and a side-by-side report.html; each design's own files in a subfolder."""
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(results)
    paths = {"comparison": out / "comparison.csv"}
    table.to_csv(paths["comparison"])
    for result in results:
        write_simulation(result, out / result.design, report=False)
    if report:
        from lemgrid.report import render_comparison

        paths["report"] = render_comparison(results, table, out / "report.html")
    return paths
