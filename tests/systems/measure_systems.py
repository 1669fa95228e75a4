"""Run every scenario of examples/systems/ for one day and print the measured results table of
docs/systems.md (markdown); with ``--write``, replace the table in docs/systems.md (between its
``measured`` markers), so that the page can be regenerated after any change:

    python tests/systems/measure_systems.py            # print the table
    python tests/systems/measure_systems.py --write    # and update docs/systems.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lemgrid.grid.kpis import grid_kpis
from lemgrid.grid.powerflow import run_powerflow
from lemgrid.scenario import load_scenario
from lemgrid.sim.runner import deliver_without_market, simulate

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS_DIR = ROOT / "examples" / "systems"
DOCS = ROOT / "docs" / "systems.md"
START, END = "<!-- measured: start -->", "<!-- measured: end -->"
ORDER = ["ipower", "interflex", "empower", "dominoes", "pebble", "smartnet", "enera", "nodes",
         "gopacs", "piclo-flex", "cornwall", "storenet"]

COLUMNS = ("scenario", "BAU: overload / voltage intervals, max loading, voltage range",
           "forecast violations before flex", "amber", "red", "red control",
           "delivered violations after (V / O / not converged)", "flex activated kWh",
           "flex cost EUR (DSO / TSO)", "of which availability EUR", "red control EUR",
           "aggregators EUR", "local traded kWh", "savings EUR", "run s")
#: Column of the red-interval count (tests/systems reads it back).
RED_COLUMN = COLUMNS.index("red")


def row(stem: str) -> list[str]:
    scenario = load_scenario(SYSTEMS_DIR / f"{stem}.yaml", days=1)
    t0 = time.perf_counter()
    k = simulate(scenario).kpis
    seconds = time.perf_counter() - t0
    bau = grid_kpis(scenario.network, run_powerflow(scenario.network, *scenario.bus_injections(
        deliver_without_market(scenario)[0])), scenario.limits, scenario.dt_h)
    red_control = "on" if scenario.config.dso.red.enabled else "off"
    return [
        stem,
        f"{bau.overload_intervals} / {bau.voltage_violation_intervals}, "
        f"{bau.max_loading_percent:.0f} %, {bau.vm_min_pu:.3f}-{bau.vm_max_pu:.3f} p.u.",
        str(k["forecast_violation_intervals_before_flexibility"]), str(k["amber_intervals"]),
        str(k["red_intervals"]), red_control,
        f"{k['voltage_violation_intervals']} / {k['overload_intervals']} / "
        f"{k['nonconverged_intervals']}",
        f"{k['flex_activated_kwh']:,.0f}",
        f"{k['dso_flex_cost_eur']:,.2f} / {k['tso_flex_cost_eur']:,.2f}",
        f"{k['availability_eur']:,.2f}", f"{k['red_cost_eur']:,.2f}",
        f"{k['aggregator_eur']:,.2f}", f"{k['local_traded_kwh']:,.0f}",
        f"{k['total_savings_eur']:,.2f}", f"{seconds:.1f}",
    ]


def table() -> str:
    stems = sorted(p.stem for p in SYSTEMS_DIR.glob("*.yaml"))
    if sorted(ORDER) != stems:
        raise SystemExit(f"examples/systems/ holds {stems}, ORDER lists {sorted(ORDER)}")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    print("\n".join(lines), flush=True)
    for stem in ORDER:
        lines.append("| " + " | ".join(row(stem)) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def parse_table(text: str) -> dict[str, list[str]]:
    """The measured table of docs/systems.md: scenario -> its cells."""
    block = text.split(START, 1)[1].split(END, 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| ")][1:]  # no header
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]
    return {c[0]: c for c in cells}


def write_docs(markdown: str, path: Path = DOCS) -> None:
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{path}: the markers {START} / {END} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{markdown}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the table in {DOCS}")
    args = parser.parse_args()
    markdown = table()
    if args.write:
        write_docs(markdown)
        print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
