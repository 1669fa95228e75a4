"""``lemgrid fairness``: every rule shares the same benefit of the community's clearing, and that
benefit is the energy the community shared (its own output) times what a shared kWh saves at the
scenario's tariffs, computed by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.scenario import load_scenario
from lemgrid.sim.runner import simulate

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
scale: {pv: 3.0}
participants:
  - {id: sun, bus: "LV1.101 Bus 4", load: {annual_kwh: 3500}, pv_kwp: 8,
     assets: [{type: battery, capacity_kwh: 10, power_kw: 4}]}
  - {id: home, bus: "LV1.101 Bus 6", load: {annual_kwh: 4500}}
  - {id: shop, bus: "LV1.101 Bus 8", load: {profile: G0-A, annual_kwh: 9000}, pv_kwp: 5}
  - {id: flat, bus: "LV1.101 Bus 10", load: {annual_kwh: 2500}}
tariffs: {import_eur_per_kwh: 0.25, network_eur_per_kwh: 0.08, export_eur_per_kwh: 0.07}
settlement: {local_network_eur_per_kwh: 0.03, levies_eur_per_kwh: 0.02}
"""


def test_fairness_shares_the_communitys_shared_energy(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["fairness", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rules = pd.read_csv(out / "rules.csv").set_index("rule")
    shares = pd.read_csv(out / "shares.csv").set_index("member")
    assert (out / "shares.html").stat().st_size > 1000
    assert list(shares.index) == ["sun", "home", "shop", "flat"]
    # by hand: retail 0.25 + 0.08 + levies 0.02, less local 0.03 + levies 0.02, less feed-in 0.07
    kappa = 0.25 + 0.08 + 0.02 - (0.03 + 0.02) - 0.07
    shared_kwh = simulate(load_scenario(path), "community").local_volume_kwh.sum()
    assert shared_kwh > 1
    assert rules.saving_eur.to_numpy() == pytest.approx(kappa * shared_kwh, rel=1e-9)
    assert shares.sum().to_numpy() == pytest.approx(kappa * shared_kwh, rel=1e-9)
    assert rules.loc["marginal", "in_core"]  # the competitive allocation of a market game
    assert "shapley" in result.output and "bill-sharing" in result.output


def test_an_unknown_design_is_a_usage_error(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    result = CliRunner().invoke(app, ["fairness", str(path), "--design", "nope",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "nope" in result.output
