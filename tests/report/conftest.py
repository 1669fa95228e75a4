"""Real SimulationResults for the report tests, built from real grids, profiles and power flows.

The market fields are filled by a simple, honestly computed sharing rule (not lemgrid's market
code, which the report does not depend on): in each interval the community's surplus export
meets its deficit import pro rata, at the mid-market rate halfway between the feed-in tariff and
the retail price (Long et al., "Peer-to-peer energy trading in a community microgrid", IEEE PES GM
2017); the rest is bought from / sold to the retailer at the tariffs. Physics is the AC power flow
of the participants' own net injections (sharing energy on paper does not change the flows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lemgrid.grid.kpis import grid_kpis
from lemgrid.grid.powerflow import run_powerflow
from lemgrid.scenario import load_scenario
from lemgrid.sim.results import SimulationResult

ROOT = Path(__file__).resolve().parents[2]
RURAL = ROOT / "examples" / "lv-rural-community.yaml"


def simulation_result(scenario, design: str = "mid-market") -> SimulationResult:
    """``scenario`` settled by mid-market sharing (``design='none'``: no sharing)."""
    parts, dt_h = scenario.participants, scenario.dt_h
    tariffs = scenario.tariffs
    retail = tariffs.import_eur_per_kwh + tariffs.network_eur_per_kwh
    feed_in = tariffs.export_eur_per_kwh
    net_kw = parts.net_p_kw
    export_kwh = np.clip(net_kw, 0.0, None) * dt_h
    import_kwh = np.clip(-net_kw, 0.0, None) * dt_h
    supply, demand = export_kwh.sum(axis=1), import_kwh.sum(axis=1)
    matched = np.minimum(supply, demand) if design != "none" else np.zeros_like(supply)
    with np.errstate(invalid="ignore", divide="ignore"):
        sold = export_kwh * np.where(supply > 0, matched / supply, 0.0)[:, None]
        bought = import_kwh * np.where(demand > 0, matched / demand, 0.0)[:, None]
    mid_eur_per_kwh = 0.5 * (retail + feed_in)
    price = np.where(matched > 0, mid_eur_per_kwh, np.nan)
    bau_cost = import_kwh * retail - export_kwh * feed_in
    cost = ((import_kwh - bought) * retail - (export_kwh - sold) * feed_in
            + (bought - sold) * mid_eur_per_kwh)
    pf = run_powerflow(scenario.network, *scenario.bus_injections(net_kw))
    limits = scenario.limits
    savings = (bau_cost - cost).sum(axis=0)
    kpis = {
        "savings_eur": float(savings.sum()),
        "share_better_off": float((savings > 1e-9).mean()),
        "self_sufficiency": float(matched.sum() / demand.sum()),
        "local_volume_kwh": float(matched.sum()),
        **grid_kpis(scenario.network, pf, limits, dt_h).to_dict(),
    }
    return SimulationResult(
        scenario=scenario.name, design=design, grid=scenario.config.grid,
        time_index=scenario.time_index, dt_h=dt_h, participant_ids=parts.ids,
        participant_bus=scenario.network.bus_names[parts.bus],
        bus_names=scenario.network.bus_names, branch_names=scenario.network.branch_names,
        tariffs=tariffs.model_dump(), limits=dict(vm_min_pu=limits.vm_min_pu,
                                                  vm_max_pu=limits.vm_max_pu,
                                                  max_loading_percent=limits.max_loading_percent),
        scheduled_kw=net_kw, metered_kw=net_kw, local_bought_kwh=bought, local_sold_kwh=sold,
        grid_import_kwh=import_kwh - bought, grid_export_kwh=export_kwh - sold, cost_eur=cost,
        bau_cost_eur=bau_cost, price_eur_per_kwh=price, local_volume_kwh=matched,
        transformer_p_kw=pf.p_slack_kw, bau_transformer_p_kw=pf.p_slack_kw,
        losses_kw=pf.losses_kw, vm_pu=pf.vm_pu, loading_percent=pf.loading_percent, kpis=kpis)


def comparison_table(results: list[SimulationResult]) -> pd.DataFrame:
    """One row per design, the KPIs as columns (as comparison.csv)."""
    return pd.DataFrame([{"design": r.design, **r.kpis} for r in results])


@pytest.fixture(scope="session")
def rural_scenario():
    return load_scenario(RURAL, days=2)


@pytest.fixture(scope="session")
def rural_result(rural_scenario) -> SimulationResult:
    return simulation_result(rural_scenario)


@pytest.fixture(scope="session")
def rural_results(rural_scenario, rural_result) -> list[SimulationResult]:
    return [rural_result, simulation_result(rural_scenario, "none")]


@pytest.fixture(scope="session")
def rural_comparison(rural_results) -> pd.DataFrame:
    return comparison_table(rural_results)


@pytest.fixture(scope="session")
def year_results() -> list[SimulationResult]:
    """A leap year of 15-minute intervals on SimBench's largest LV feeder (111 buses, 104
    participants): the size a report must handle."""
    scenario = load_scenario(RURAL, grid="simbench:1-LV-semiurb5--0-sw", start="2016-01-01",
                             days=366)
    return [simulation_result(scenario), simulation_result(scenario, "none")]


# --- headless browser -----------------------------------------------------------------------------


# Decoded by the browser itself (no image library needed): size, distinct colours, share of
# pixels that are not near-white.
_IMAGE_STATS_JS = """async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  let painted = 0;
  for (let i = 0; i < d.length; i += 4) {
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    if (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240) painted++;
  }
  return {width: canvas.width, height: canvas.height, distinct: colours.size,
          painted: painted / (d.length / 4)};
}"""

# Per plot: traces plotly knows of, and marks actually drawn (paths with geometry, heatmap images).
_PLOTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
  traces: (el._fullData || []).length,
  svgs: el.querySelectorAll('.main-svg').length,
  marks: [...el.querySelectorAll('g.trace path')]
           .filter(p => (p.getAttribute('d') || '').length > 10).length
         + el.querySelectorAll('g.hm image').length,
}))"""


class Rendered:
    """A report opened in the browser, with every request it made."""

    def __init__(self, browser, path: Path, n_plots: int) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function(
            "n => [...document.querySelectorAll('.js-plotly-plot')]"
            ".filter(el => el.querySelector('.main-svg')).length >= n",
            arg=n_plots, timeout=60_000)
        self.page.evaluate("document.fonts.ready.then(() => true)")

    def plots(self) -> list[dict]:
        return self.page.evaluate(_PLOTS_JS)

    def image_stats(self, png: bytes) -> dict:
        import base64

        blank = self.context.new_page()
        try:
            return blank.evaluate(_IMAGE_STATS_JS, base64.b64encode(png).decode("ascii"))
        finally:
            blank.close()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_report(browser):
    """``open_report(path, n_plots)``: the report loaded and its plots drawn."""
    opened: list[Rendered] = []

    def open_(path: Path, n_plots: int) -> Rendered:
        opened.append(Rendered(browser, path, n_plots))
        return opened[-1]

    yield open_
    for rendered in opened:
        rendered.close()
