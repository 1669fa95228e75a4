"""A whole year of the market lab: ``lemgrid simulate`` on ``simbench:1-LV-rural1--0-sw``.

Ours: the CLI end to end (process start, 366 day-ahead community clearings, AC power flow of the
schedule, of the delivery and of business-as-usual over 35,136 intervals, settlement, KPIs,
parquet/CSV/JSON and the HTML report). Goal: <= 120 s.

Peer, in the same run: the same job done the straightforward way with the field's usual tools:
each day's community problem modelled in PuLP and solved by CBC, and every interval's power flow
with pandapower's runpp (three per interval: schedule, delivery, business-as-usual). Both are
timed on a sample (days, intervals) and extrapolated to the year. The last line printed is one
JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """
name: year-lv-rural-community
grid: simbench:1-LV-rural1--0-sw
start: 2016-01-01
days: 366
assets:
  - {type: battery, every: 3, capacity_kwh: 10, power_kw: 5, efficiency: 0.92}
scale: {pv: 1.5}
market: {design: community}
"""


def ours(scenario: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lemgrid.cli", "simulate", str(scenario), "--out",
                    str(out)], check=True, capture_output=True)
    return time.perf_counter() - t0


def peer(scenario_path: Path, sample_days: int = 5, sample_intervals: int = 100) -> dict:
    import pandapower as pp

    sys.path.insert(0, str(ROOT / "tests" / "community"))
    from conftest import pulp_community_cost

    from lemgrid.grid.sources import load_grid, load_pandapower_net
    from lemgrid.market.community import CommunityProblem
    from lemgrid.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    rng = np.random.default_rng(0)
    days = rng.choice(366, sample_days, replace=False)
    t0 = time.perf_counter()
    for day in days:
        problem = CommunityProblem.from_scenario(scenario, interval_slice=slice(day * 96,
                                                                                (day + 1) * 96))
        pulp_community_cost(problem)
    per_day = (time.perf_counter() - t0) / sample_days
    net = load_pandapower_net(scenario.config.grid)
    profiles = load_grid(scenario.config.grid).profiles
    steps = rng.choice(35136, sample_intervals, replace=False)
    pp.runpp(net, numba=False)
    t0 = time.perf_counter()
    for k in steps:
        net.load.loc[net.load.in_service, "p_mw"] = profiles.load_p_kw[k] / 1e3
        net.load.loc[net.load.in_service, "q_mvar"] = profiles.load_q_kvar[k] / 1e3
        net.sgen.loc[net.sgen.in_service, "p_mw"] = profiles.sgen_p_kw[k] * 1.5 / 1e3
        pp.runpp(net, numba=False)
    per_pf = (time.perf_counter() - t0) / sample_intervals
    return {"pulp_cbc_per_day_s": round(per_day, 4), "pandapower_per_interval_s": round(per_pf, 4),
            "year_s_extrapolated": round(366 * per_day + 3 * 35136 * per_pf, 1)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "year.yaml"
        scenario.write_text(SCENARIO)
        ours(scenario, Path(tmp) / "warm")  # grid cache
        seconds = ours(scenario, Path(tmp) / "out")
        kpis = json.loads((Path(tmp) / "out" / "kpis.json").read_text())
        report_mb = (Path(tmp) / "out" / "report.html").stat().st_size / 1e6
        reference = peer(scenario)
    print(json.dumps({
        "benchmark": "simulate",
        "grid": "simbench:1-LV-rural1--0-sw",
        "design": "community",
        "intervals": kpis["intervals"],
        "participants": kpis["participants"],
        "year_seconds": round(seconds, 2),
        "goal_year_seconds": 120,
        "simulation_seconds_inside": kpis["seconds"],
        "report_mb": round(report_mb, 2),
        "peer": reference,
        "ratio_vs_peer": round(reference["year_s_extrapolated"] / seconds, 1),
        "total_savings_eur": round(kpis["total_savings_eur"], 2),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
