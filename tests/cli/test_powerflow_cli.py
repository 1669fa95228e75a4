"""``lemgrid powerflow`` end to end: files, columns, index and summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.grid.sources import load_pandapower_net


def test_simbench_two_days(tmp_path):
    out = tmp_path / "pf"
    result = CliRunner().invoke(app, ["powerflow", "simbench:1-LV-rural1--0-sw", "--start",
                                      "2016-07-01", "--days", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    vm = pd.read_parquet(out / "vm_pu.parquet")
    loading = pd.read_parquet(out / "loading_percent.parquet")
    net = load_pandapower_net("simbench:1-LV-rural1--0-sw")
    assert list(vm.columns) == list(net.bus.name)
    assert list(loading.columns) == list(net.line.name) + list(net.trafo.name)
    assert vm.index[0] == pd.Timestamp("2016-07-01", tz="Europe/Berlin") and len(vm) == 192
    summary = json.loads((out / "summary.json").read_text())
    for key in ("losses_kwh", "vm_min_pu", "vm_min_bus", "vm_max_pu", "vm_max_bus",
                "max_loading_percent", "voltage_violation_intervals", "overload_intervals",
                "peak_import_kw", "peak_export_kw"):
        assert key in summary
    assert summary["vm_min_pu"] == pytest.approx(vm.min().min())
    assert summary["vm_max_bus"] == vm.max().idxmax()
    assert summary["max_loading_percent"] == pytest.approx(loading.max().max())


def test_hourly_resolution_and_limits(tmp_path):
    out = tmp_path / "pf"
    result = CliRunner().invoke(app, [
        "powerflow", "simbench:1-LV-rural1--0-sw", "--start", "2016-07-01", "--days", "1",
        "--resolution", "60min", "--vm-max-pu", "1.02", "--out", str(out)])
    assert result.exit_code == 0, result.output
    vm = pd.read_parquet(out / "vm_pu.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert len(vm) == 24
    assert summary["voltage_violation_intervals"] == int((vm > 1.02).any(axis=1).sum()) > 0


@pytest.mark.parametrize("args, message", [
    (["simbench:1-LV-nowhere--0-sw"], "unknown SimBench code"),
    (["simbench:1-LV-rural1--0-sw", "--resolution", "7min"], "resolution"),
    (["simbench:1-LV-rural1--0-sw", "--start", "2020-01-01"], "outside"),
    (["missing-grid.json"], "not found"),
    # Tracebacks on main (issue 10, item 21):
    (["simbench:1-LV-rural1--0-sw", "--start", "notadate"],
     "error: --start: not a date or date-time"),
    (["simbench:1-LV-rural1--0-sw", "--start", "2016-06-01", "--days", "nan"],
     "error: --days must be a finite number > 0, got nan"),
])
def test_bad_input_exits_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["powerflow", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bad_start_of_a_scenario_file_exits_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("grid: simbench:1-LV-rural1--0-sw\n")
    result = CliRunner().invoke(app, ["powerflow", str(path), "--start", "notadate", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "--start: not a date" in result.output


def _case33(tmp_path, name: str, change) -> str:
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case33bw()
    change(net)
    path = tmp_path / name
    pp.to_json(net, str(path))
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: _write(tmp, "dict.json", '{"a": 1}'), "not a pandapower JSON network"),
    (lambda tmp: _write(tmp, "list.json", "[1, 2]"), "not a pandapower JSON network"),
    (lambda tmp: _write(tmp, "text.json", "not json"), "not a pandapower JSON network"),
    (lambda tmp: _write(tmp, "fake.json", '{"_module": "pandapower.auxiliary", "_class": '
                        '"pandapowerNet", "_object": {"bus": 5}}'),
     "table 'bus' is missing or not a table"),
    (lambda tmp: _case33(tmp, "nocol.json", lambda n: n.line.drop(columns="r_ohm_per_km",
                                                                   inplace=True)),
     "not a usable pandapower network (KeyError: 'r_ohm_per_km')"),
    (lambda tmp: _case33(tmp, "zero_kv.json", lambda n: n.bus.__setitem__("vn_kv", 0.0)),
     "not a usable pandapower network"),
], ids=["dict", "list", "not-json", "bus-not-a-table", "missing-column", "zero-kv"])
def test_json_that_is_not_a_pandapower_net_exits_2(tmp_path, make, message):
    # On main: AttributeError / TypeError / KeyError tracebacks.
    result = CliRunner().invoke(app, ["powerflow", make(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and message in result.output


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _command_paths(group, prefix=()):
    # Typer may vendor click rather than depend on it: groups are recognised by their
    # sub-commands, not by importing click.
    for name, command in group.commands.items():
        yield prefix + (name,)
        if getattr(command, "commands", None):
            yield from _command_paths(command, prefix + (name,))


def test_every_command_has_help():
    """`--help` works for the program and every command and sub-command."""
    import typer

    top = subprocess.run([sys.executable, "-m", "lemgrid.cli", "--help"], capture_output=True,
                         text=True)
    assert top.returncode == 0 and "powerflow" in top.stdout
    runner = CliRunner()
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("powerflow",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output
