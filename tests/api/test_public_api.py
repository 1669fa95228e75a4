"""The public Python API (issue 11, item 4): ``import lemgrid`` is light, and each function of
the front door works on the inputs it documents and returns labelled tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lemgrid
from lemgrid.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
RURAL = "simbench:1-LV-rural1--0-sw"
HEAVY = ("numpy", "pandas", "pandapower", "pydantic", "scipy", "highspy", "simbench", "yaml")


def test_import_lemgrid_loads_no_heavy_module():
    code = ("import sys, lemgrid; heavy = [m for m in %r if m in sys.modules]; "
            "print(','.join(heavy))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"import lemgrid imported {out}"


def test_the_front_door_lists_the_api():
    for name in ("load_scenario", "simulate", "compare", "powerflow", "clear", "render_report"):
        assert name in lemgrid.__all__ and callable(getattr(lemgrid, name))
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        lemgrid.simulat  # noqa: B018


@pytest.fixture(scope="module")
def scenario():
    return lemgrid.load_scenario({"grid": RURAL, "start": "2016-06-01", "days": 1,
                                  "assets": [{"type": "battery", "every": 3, "capacity_kwh": 5,
                                              "power_kw": 2.5}],
                                  "market": {"design": "uniform"}})


def test_load_scenario_from_a_file_a_mapping_and_a_pandapower_net(scenario):
    from_file = lemgrid.load_scenario(ROOT / "examples" / "lv-rural-community.yaml", days=1)
    assert len(from_file.time_index) == 96
    assert scenario.market.design == "uniform" and len(scenario.participants.batteries) > 0
    with pytest.raises(InputError, match="dayz"):
        lemgrid.load_scenario({"grid": RURAL, "dayz": 1})

    from lemgrid.grid.sources import load_pandapower_net

    net = load_pandapower_net(RURAL)
    from_net = lemgrid.load_scenario(net, start="2016-06-01", days=1)
    # The net's loads are the participants, with the same profiles as from the grid spec.
    np.testing.assert_array_equal(from_net.participants.ids, scenario.participants.ids)
    np.testing.assert_allclose(from_net.participants.load_p_kw, scenario.participants.load_p_kw)
    with pytest.raises(InputError, match="source must be"):
        lemgrid.load_scenario(42)


def test_simulate_returns_tables_labelled_by_interval_and_participant(scenario):
    result = lemgrid.simulate(scenario)
    cost = result.participant_frame("cost_eur")
    assert list(cost.columns) == list(scenario.participants.ids)
    assert isinstance(cost.index, pd.DatetimeIndex) and cost.index.tz is not None
    assert cost.index[0] == pd.Timestamp("2016-06-01", tz=cost.index.tz)
    bills = result.bills().set_index("participant")
    pd.testing.assert_series_equal(cost.sum(), bills.cost_eur, check_names=False)
    battery = result.participant_frame("battery_kw")
    assert battery.shape == cost.shape
    voltages = result.bus_frame()
    assert list(voltages.columns) == list(scenario.network.bus_names)
    with pytest.raises(InputError, match="unknown participant series 'cost'"):
        result.participant_frame("cost")


def test_compare_gives_one_kpi_row_and_one_result_per_design(scenario):
    comparison = lemgrid.compare(scenario, ["none", "uniform"])
    assert list(comparison.kpis.index) == ["none", "uniform"]
    assert list(comparison.results) == ["none", "uniform"]
    assert comparison.kpis.loc["none", "local_traded_kwh"] == 0
    assert comparison.kpis.loc["uniform", "total_cost_eur"] == pytest.approx(
        comparison.results["uniform"].cost_eur.sum())


def test_powerflow_of_ieee33_matches_pandapower_by_bus_name():
    import pandapower as pp
    import pandapower.networks as pn

    check = lemgrid.powerflow("ieee33")
    voltages = check.voltages()
    net = pn.case33bw()
    pp.runpp(net)
    # Baran & Wu number the buses 1..33 (lemgrid's names); pandapower's case 0..32.
    expected = pd.Series(net.res_bus.vm_pu.to_numpy(), index=[str(i + 1) for i in net.bus.index])
    np.testing.assert_allclose(voltages.loc[0, expected.index], expected, atol=1e-6)
    assert voltages.index.name == "snapshot"


def test_powerflow_of_a_scenario_is_labelled_by_time_and_branch(scenario):
    check = lemgrid.powerflow(scenario)
    loadings = check.loadings()
    assert list(loadings.columns) == list(scenario.network.branch_names)
    assert loadings.index.equals(pd.Index(scenario.time_index, name="interval"))


def test_clear_a_table_of_orders_by_hand():
    # Buyers 2 kWh at 0.30, 1 at 0.25, 1 at 0.15; sellers 2 at 0.10, 1 at 0.20. Demand meets
    # supply at 3 kWh: the last accepted offer is 0.20, the last accepted bid 0.25 (the rejected
    # bid at 0.15 is below both), so the price interval is [0.20, 0.25] and k = 0.5 gives 0.225.
    orders = pd.DataFrame({
        "order_id": ["b1", "b2", "b3", "s1", "s2"], "participant": ["a", "b", "e", "c", "d"],
        "side": ["buy", "buy", "buy", "sell", "sell"], "quantity_kwh": [2.0, 1.0, 1.0, 2.0, 1.0],
        "price_eur_per_kwh": [0.30, 0.25, 0.15, 0.10, 0.20]})
    result = lemgrid.clear(orders, "uniform")
    assert result.total_volume_kwh == pytest.approx(3.0)
    assert result.price_eur_per_kwh[0] == pytest.approx(0.225)
    fills = result.fills_frame()
    assert fills.set_index("order_id").loc["b3", "filled_kwh"] == 0


def test_render_report_of_a_simulation_and_a_comparison(scenario, tmp_path):
    result = lemgrid.simulate(scenario, "none")
    page = lemgrid.render_report(result, tmp_path / "one.html")
    assert page.exists() and "none" in page.read_text(encoding="utf-8")
    comparison = lemgrid.compare(scenario, ["none", "uniform"])
    page = lemgrid.render_report(comparison, tmp_path / "two.html")
    assert "uniform" in page.read_text(encoding="utf-8")
