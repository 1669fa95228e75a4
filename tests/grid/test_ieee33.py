"""IEEE 33-bus feeder: Baran & Wu (1989), "Network reconfiguration in distribution systems for
loss reduction and load balancing", IEEE Trans. Power Delivery 4(2): base-case losses 202.7 kW and
minimum voltage 0.9131 p.u. at bus 18."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.dso.grid_check import powerflow_study


def test_base_case_matches_baran_wu():
    study = powerflow_study("ieee33")
    assert study.result.losses_kw[0] == pytest.approx(202.7, abs=0.1)
    assert study.kpis.vm_min_pu == pytest.approx(0.9131, abs=5e-5)
    assert study.kpis.vm_min_bus == "18"
    assert list(study.network.bus_names) == [str(i) for i in range(1, 34)]


def test_cli_writes_published_base_case(tmp_path):
    result = CliRunner().invoke(app, ["powerflow", "ieee33", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["losses_kw"] == pytest.approx(202.7, abs=0.1)
    assert summary["vm_min_bus"] == "18"
    assert summary["vm_min_pu"] == pytest.approx(0.9131, abs=5e-5)
    assert "losses_kwh" not in summary


def test_snapshot_grid_refuses_a_horizon(tmp_path):
    result = CliRunner().invoke(app, ["powerflow", "ieee33", "--days", "2", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "snapshot" in result.output
