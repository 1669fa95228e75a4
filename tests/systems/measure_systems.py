"""Run every scenario of examples/systems/ for one day and print the measured results table of
docs/systems.md (markdown): python tests/systems/measure_systems.py"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lemgrid.grid.powerflow import run_powerflow
from lemgrid.scenario import load_scenario
from lemgrid.sim.runner import business_as_usual, simulate

SYSTEMS_DIR = Path(__file__).resolve().parents[2] / "examples" / "systems"
ORDER = ["ipower", "interflex", "empower", "dominoes", "pebble", "smartnet", "enera", "nodes",
         "gopacs", "piclo-flex", "cornwall", "storenet"]

HEADER = ("| scenario | BAU: overload / voltage intervals, max loading, voltage range | "
          "forecast violations before flex | amber | red | delivered violations after (V / O) | "
          "flex activated kWh | flex cost EUR (DSO / TSO) | of which availability EUR | "
          "red control EUR | aggregators EUR | local traded kWh | savings EUR | run s |")


def row(stem: str) -> str:
    scenario = load_scenario(SYSTEMS_DIR / f"{stem}.yaml", days=1)
    t0 = time.perf_counter()
    k = simulate(scenario).kpis
    seconds = time.perf_counter() - t0
    bau = run_powerflow(scenario.network, *scenario.bus_injections(
        business_as_usual(scenario)[0]))
    vm = bau.vm_pu[:, scenario.network.bus_node >= 0]
    return (f"| {stem} | {k['bau_overload_intervals']} / {k['bau_voltage_violation_intervals']}, "
            f"{np.nanmax(bau.loading_percent):.0f} %, {np.nanmin(vm):.3f}-{np.nanmax(vm):.3f} "
            f"p.u. | {k['forecast_violation_intervals_before_flexibility']} | "
            f"{k['amber_intervals']} | {k['red_intervals']} | "
            f"{k['voltage_violation_intervals']} / {k['overload_intervals']} | "
            f"{k['flex_activated_kwh']:,.0f} | {k['dso_flex_cost_eur']:,.2f} / "
            f"{k['tso_flex_cost_eur']:,.2f} | {k['availability_eur']:,.2f} | "
            f"{k['red_cost_eur']:,.2f} | {k['aggregator_eur']:,.2f} | "
            f"{k['local_traded_kwh']:,.0f} | {k['total_savings_eur']:,.2f} | {seconds:.1f} |")


def main() -> None:
    stems = sorted(p.stem for p in SYSTEMS_DIR.glob("*.yaml"))
    assert sorted(ORDER) == stems, stems
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for stem in ORDER:
        print(row(stem), flush=True)


if __name__ == "__main__":
    main()
