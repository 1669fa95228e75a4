"""A year of 15-minute AC power flow: lemgrid's batched solver vs pandapower's runpp loop.

Ours: the whole CLI (``lemgrid powerflow simbench:CODE --out DIR``: process start, imports, grid
and profiles from the cache, the power flow of all 35,136 intervals, parquet + JSON output),
median of 3 runs after one warm-up run; also the in-process power flow alone and a cold run
(empty cache: pandapower + simbench conversion included).

Peer: pandapower's Newton-Raphson (``pp.runpp``) called once per interval, the usual way to run a
time series with it, on a random sample of intervals; the per-interval time is extrapolated to the
year. The net's loading time is added to the peer, like our grid loading is part of our CLI.

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LV = "simbench:1-LV-rural1--0-sw"
MV = "simbench:1-MV-semiurb--0-sw"
LEMGRID = [sys.executable, "-m", "lemgrid.cli"]


def time_cli(spec: str, runs: int = 3, env: dict | None = None) -> float:
    with tempfile.TemporaryDirectory() as out:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([*LEMGRID, "powerflow", spec, "--out", out], check=True,
                           capture_output=True, env=env)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_pandapower(spec: str, sample: int, seed: int = 1) -> tuple[float, float, float, list]:
    """(load seconds, seconds per runpp, max |dV| vs ours on the sample, the sample)."""
    import pandapower as pp

    from lemgrid.grid.powerflow import run_powerflow
    from lemgrid.grid.sources import load_grid, load_pandapower_net

    t0 = time.perf_counter()
    net = load_pandapower_net(spec)
    load_s = time.perf_counter() - t0
    grid = load_grid(spec)
    profiles = grid.profiles
    steps = np.random.default_rng(seed).choice(len(profiles.time_index), sample, replace=False)
    on = {t: net[t]["in_service"].to_numpy(bool) for t in ("load", "sgen")}
    p, q = profiles.bus_injections(grid.network)
    ours = run_powerflow(grid.network, p[steps], q[steps])
    pp.runpp(net, numba=False)  # warm-up (first call builds lookups)
    max_dv = 0.0
    t0 = time.perf_counter()
    for row, k in enumerate(steps):
        net.load.loc[on["load"], "p_mw"] = profiles.load_p_kw[k] / 1e3
        net.load.loc[on["load"], "q_mvar"] = profiles.load_q_kvar[k] / 1e3
        net.sgen.loc[on["sgen"], "p_mw"] = profiles.sgen_p_kw[k] / 1e3
        pp.runpp(net, numba=False)
        max_dv = max(max_dv, float(np.nanmax(np.abs(net.res_bus.vm_pu.to_numpy()
                                                     - ours.vm_pu[row]))))
    per_step = (time.perf_counter() - t0) / sample
    return load_s, per_step, max_dv, steps


def time_inprocess(spec: str) -> float:
    from lemgrid.grid.powerflow import run_powerflow
    from lemgrid.grid.sources import load_grid

    grid = load_grid(spec)
    p, q = grid.profiles.bus_injections(grid.network)
    t0 = time.perf_counter()
    run_powerflow(grid.network, p, q)
    return time.perf_counter() - t0


def measure(spec: str, sample: int) -> dict:
    time_cli(spec, runs=1)  # warm the cache
    ours_cli = time_cli(spec)
    ours_pf = time_inprocess(spec)
    load_s, per_step, max_dv, _ = time_pandapower(spec, sample)
    n = 35136
    peer = load_s + per_step * n
    return {
        "intervals": n,
        "lemgrid_cli_s": round(ours_cli, 3),
        "lemgrid_powerflow_s": round(ours_pf, 3),
        "pandapower_runpp_per_interval_ms": round(per_step * 1e3, 2),
        "pandapower_year_s_extrapolated": round(peer, 1),
        "pandapower_sampled_intervals": sample,
        "ratio_cli_vs_pandapower": round(peer / ours_cli, 1),
        "ratio_powerflow_vs_pandapower": round(per_step * n / ours_pf, 1),
        "max_abs_dv_pu_vs_pandapower": max_dv,
    }


def main() -> None:
    lv = measure(LV, sample=300)
    print(f"LV {LV}: {json.dumps(lv)}", flush=True)
    mv = measure(MV, sample=100)
    print(f"MV {MV}: {json.dumps(mv)}", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, LEMGRID_CACHE_DIR=cache)
        cold = time_cli(LV, runs=1, env=env)
    result = {
        "benchmark": "powerflow",
        "grid": LV,
        "year_seconds": lv["lemgrid_cli_s"],
        "ratio_vs_pandapower": lv["ratio_cli_vs_pandapower"],
        "goal_ratio": 500,
        "lv": lv,
        "mv_grid": MV,
        "mv": mv,
        "lv_cold_cache_cli_s": round(cold, 2),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
