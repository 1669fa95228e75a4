"""participant_intervals.parquet: the bills, storage included, recomputed by hand in pandas from
the files ``lemgrid simulate`` writes and the scenario's tariffs alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.scenario import load_scenario

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 2
scale: {pv: 3.0}
participants:
  - {id: sun, bus: "LV1.101 Bus 4", load: {annual_kwh: 3500}, pv_kwp: 8,
     assets: [{type: battery, capacity_kwh: 10, power_kw: 4, efficiency: 0.81}]}
  - {id: home, bus: "LV1.101 Bus 6", load: {annual_kwh: 4500},
     assets: [{type: ev, power_kw: 11, energy_kwh: 9}]}
  - {id: shop, bus: "LV1.101 Bus 8", load: {profile: G0-A, annual_kwh: 9000}, pv_kwp: 5}
forecast: {method: noisy, error: 0.1}
settlement: {local_network_eur_per_kwh: 0.03, levies_eur_per_kwh: 0.02, fixed_eur_per_day: 0.3}
"""


@pytest.fixture(scope="module", params=["uniform", "pay-as-bid", "community", "none"])
def run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    path = out / "scenario.yaml"
    path.write_text(SCENARIO)
    result = CliRunner().invoke(app, ["simulate", str(path), "--design", request.param,
                                      "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "participant_intervals.parquet")
    bills = pd.read_csv(out / "bills.csv").set_index("participant")
    return request.param, load_scenario(path), table, bills


def test_one_row_per_interval_and_participant(run):
    _, scenario, table, _ = run
    n_t, n = len(scenario.time_index), len(scenario.participants)
    assert len(table) == n_t * n
    assert table.interval.dt.tz is not None
    assert (table.groupby("participant").size() == n_t).all()
    assert pd.DatetimeIndex(table.interval.unique()).equals(scenario.time_index)


def test_costs_add_up_to_bills_csv(run):
    _, _, table, bills = run
    components = [c for c in table.columns
                  if c.endswith("_eur") and c not in ("cost_eur", "bau_cost_eur")]
    assert len(components) >= 8
    np.testing.assert_allclose(table[components].sum(axis=1), table.cost_eur, atol=1e-9)
    per = table.groupby("participant")[["cost_eur", "bau_cost_eur", "local_bought_kwh"]].sum()
    np.testing.assert_allclose(per.cost_eur, bills.loc[per.index, "cost_eur"], atol=1e-5)
    np.testing.assert_allclose(per.bau_cost_eur, bills.loc[per.index, "bau_cost_eur"], atol=1e-5)


def test_bills_recomputed_by_hand_from_energies_and_tariffs(run):
    design, scenario, t, _ = run
    tariffs, s = scenario.config.tariffs, scenario.config.settlement
    retail = tariffs.import_eur_per_kwh + tariffs.network_eur_per_kwh
    dt = scenario.dt_h
    # Energy: what was delivered is what the participant committed in the market, plus what it
    # exchanged with the retailer, plus the undelivered part of its commitments (imbalance).
    np.testing.assert_allclose(
        t.delivered_kw * dt,
        t.market_sold_kwh - t.market_bought_kwh + t.retail_export_kwh - t.retail_import_kwh
        + t.imbalance_long_kwh - t.imbalance_short_kwh, atol=1e-6)
    # Imbalance only on commitments: never more than was sold / bought.
    assert (t.imbalance_short_kwh <= t.market_sold_kwh + 1e-9).all()
    assert (t.imbalance_long_kwh <= t.market_bought_kwh + 1e-9).all()
    # Metered exchange with the outside never exceeds the metered consumption / generation.
    assert (t.grid_import_kwh <= np.maximum(-t.delivered_kw * dt, 0) + 1e-9).all()
    assert (t.grid_export_kwh <= np.maximum(t.delivered_kw * dt, 0) + 1e-9).all()
    # Money, component by component, at the scenario's prices.
    np.testing.assert_allclose(
        t.retail_energy_eur, t.retail_import_kwh * tariffs.import_eur_per_kwh
        - t.retail_export_kwh * tariffs.export_eur_per_kwh, atol=1e-9)
    np.testing.assert_allclose(
        t.network_eur, t.retail_import_kwh * tariffs.network_eur_per_kwh
        + t.local_bought_kwh * s.local_network_eur_per_kwh, atol=1e-9)
    np.testing.assert_allclose(
        t.imbalance_eur, t.imbalance_short_kwh * retail
        - t.imbalance_long_kwh * tariffs.export_eur_per_kwh, atol=1e-9)
    np.testing.assert_allclose(
        t.levies_eur, (t.market_bought_kwh + t.retail_import_kwh + t.imbalance_short_kwh)
        * s.levies_eur_per_kwh, atol=1e-9)
    np.testing.assert_allclose(t.fixed_eur, s.fixed_eur_per_day * dt / 24, atol=1e-12)
    # Local trades are paid between the limits a buyer and a seller accept.
    traded = t.market_bought_kwh + t.market_sold_kwh > 1e-6
    price = t.market_eur[traded].abs() / (t.market_bought_kwh + t.market_sold_kwh)[traded]
    assert (price >= tariffs.export_eur_per_kwh - 1e-9).all()
    assert (price <= retail + 1e-9).all()
    if design == "none":
        assert (t.market_eur == 0).all() and (t.local_bought_kwh == 0).all()


def test_battery_energy_follows_its_output(run):
    """The stored energy moves by the battery's output through its efficiency (sqrt of the
    round trip each way): e[t] = e[t-1] + (eta x charge - discharge / eta) x dt."""
    _, scenario, t, _ = run
    battery = scenario.participants.batteries
    eta = float(battery.eta_charge[0])
    assert eta == pytest.approx(0.9)
    sun = t[t.participant == "sun"].reset_index(drop=True)
    e0 = battery.soc_initial[0] * battery.capacity_kwh[0]
    previous = np.r_[e0, sun.battery_e_kwh.to_numpy()[:-1]]
    out = sun.battery_kw.to_numpy()
    expected = previous + (eta * np.maximum(-out, 0) - np.maximum(out, 0) / eta) * scenario.dt_h
    np.testing.assert_allclose(sun.battery_e_kwh, expected, atol=1e-6)
    assert (np.abs(out) > 0.1).any()  # the battery did something
    assert (sun.battery_e_kwh >= -1e-9).all() and (sun.battery_e_kwh <= 10 + 1e-9).all()
    others = t[t.participant != "sun"]
    assert (others.battery_kw == 0).all() and (others.battery_e_kwh == 0).all()
