"""An asset kind registered from outside lemgrid runs in `simulate` and `compare`."""

from __future__ import annotations

import types
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import lemgrid.designs
from lemgrid.assets.kinds import (
    KindPlan,
    LPBlock,
    NoFlexibility,
    register_asset_kind,
    unregister_asset_kind,
)
from lemgrid.scenario.config import AssetBase, DesignOptions, Power


class AquariumConfig(AssetBase):
    """A heater that draws a constant ``p_kw`` all day."""

    type: Literal["aquarium"]
    p_kw: Power


@dataclass(frozen=True, eq=False)
class Aquariums:
    owner: np.ndarray
    name: np.ndarray
    p_kw: np.ndarray
    n_t: np.ndarray  # intervals of the table's window (per row, to keep take_rows simple)

    def __len__(self) -> int:
        return len(self.name)


class AquariumKind(NoFlexibility):
    name = "aquarium"
    Config = AquariumConfig

    def build(self, config, owner, name, horizon, loc):
        return dict(owner=owner, name=name, p_kw=config.p_kw, n_t=len(horizon.time_index))

    def table(self, rows):
        return Aquariums(**{k: np.array([r[k] for r in rows]) for k in rows[0]})

    def window(self, table, start, stop):
        return replace(table, n_t=np.full(len(table), stop - start))

    def carry(self, table, plan):
        return table

    def rule_dispatch(self, table, net_kw, dt_h):
        n_t = net_kw.shape[0]
        return KindPlan(table.owner, -np.broadcast_to(table.p_kw, (n_t, len(table))).copy(),
                        np.zeros((n_t, len(table))))

    def lp_block(self, lp, table, dt_h, final_state, context):
        n_t = int(table.n_t[0])
        p = np.broadcast_to(table.p_kw, (n_t, len(table)))
        var = lp.var((n_t, len(table)), lb=p, ub=p)

        def read(solution):
            return KindPlan(table.owner, -solution[var], np.zeros((n_t, len(table))))

        return LPBlock(draw=[(var, 1.0)], read=read)


@pytest.fixture()
def aquarium():
    register_asset_kind(AquariumKind())
    yield
    unregister_asset_kind("aquarium")


def scenario_file(tmp_path, extra_assets, name="aquarium.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({
        "name": "aquarium", "grid": "simbench:1-LV-rural1--0-sw", "start": "2016-06-06",
        "days": 1, "participants": "from-grid",
        "assets": [{"type": "ev", "every": 3, "power_kw": 11, "energy_kwh": 9}, *extra_assets],
        "tariffs": {"import_eur_per_kwh": 0.25, "export_eur_per_kwh": 0.08,
                    "network_eur_per_kwh": 0.08},
        "market": {"design": "community"}}))
    return path


def test_toy_kind_runs_in_simulate_and_compare(aquarium, tmp_path):
    from lemgrid.cli import app
    from lemgrid.scenario import load_scenario
    from lemgrid.sim.runner import simulate

    path = scenario_file(tmp_path, [{"type": "aquarium", "every": 2, "p_kw": 0.5}])
    with_toy = load_scenario(path)
    plain = load_scenario(scenario_file(tmp_path, [], "plain.yaml"))
    n_toys = len(with_toy.participants.kinds["aquarium"])
    assert n_toys == len(range(0, len(with_toy.participants), 2))
    for design in ("none", "community"):
        a, b = simulate(with_toy, design), simulate(plain, design)
        # The heaters' energy is metered: 0.5 kW x 24 h each (they are not flexible: the
        # community cannot move it either).
        extra_kwh = (b.metered_kw - a.metered_kw).sum() * with_toy.dt_h
        assert extra_kwh == pytest.approx(n_toys * 0.5 * 24, rel=1e-9)
        assert a.cost_eur.sum() > b.cost_eur.sum()
    result = CliRunner().invoke(app, ["compare", str(path), "--designs", "none,community",
                                      "--no-report", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "comparison.csv").is_file()


def test_unknown_asset_type_names_the_field_and_line(tmp_path):
    from lemgrid.cli import app

    path = scenario_file(tmp_path, [{"type": "aquarium", "every": 2, "p_kw": 0.5}])
    result = CliRunner().invoke(app, ["simulate", str(path), "--no-report", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "line" in result.output and "assets[1].type" in result.output
    assert "'heat_pump'" in result.output  # the known kinds are listed


def test_toy_kind_config_refuses_unknown_keys(aquarium, tmp_path):
    from lemgrid.cli import app

    path = scenario_file(tmp_path, [{"type": "aquarium", "every": 2, "p_kw": 0.5, "pkw": 1}])
    result = CliRunner().invoke(app, ["simulate", str(path), "--no-report", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "assets[1].pkw" in result.output


def test_registering_twice_or_an_incomplete_kind_is_refused(aquarium):
    from lemgrid.errors import InputError

    with pytest.raises(InputError, match="already registered"):
        register_asset_kind(AquariumKind())
    with pytest.raises(InputError, match="lacks"):
        register_asset_kind(object())


class SharedCommunityOptions(DesignOptions):
    design: Literal["toy-community"] = "toy-community"


def _clear_as_the_community(session, options):
    """A design from outside the package: the built-in community LP under another name."""
    community = lemgrid.designs.get_design("community")
    return community.clear_session(session, community.Options())


toy_design = types.SimpleNamespace(name="toy-community", summary="the community LP (a test)",
                                   Options=SharedCommunityOptions,
                                   clear_session=_clear_as_the_community)


def test_a_toy_design_and_a_toy_kind_registered_from_outside_run_together(aquarium, tmp_path):
    """Both extension points at once: a design and an asset kind that the package does not know
    run in a simulation and a comparison, to the cent like the built-in design they wrap."""
    from lemgrid.scenario import load_scenario
    from lemgrid.sim.runner import compare, simulate

    lemgrid.designs.register(toy_design)
    try:
        path = scenario_file(tmp_path, [{"type": "aquarium", "every": 2, "p_kw": 0.5}])
        scenario = load_scenario(path, market={"design": "toy-community"})
        assert isinstance(scenario.market, SharedCommunityOptions)
        toy = simulate(scenario)
        assert toy.design == "toy-community"
        builtin, again = compare(scenario, ["community", "toy-community"])
        np.testing.assert_allclose(toy.cost_eur, builtin.cost_eur, atol=0.005)
        np.testing.assert_allclose(again.cost_eur, builtin.cost_eur, atol=0.005)
        n_toys = len(scenario.participants.kinds["aquarium"])
        plain = simulate(load_scenario(scenario_file(tmp_path, [], "plain.yaml")), "community")
        extra_kwh = (plain.metered_kw - toy.metered_kw).sum() * scenario.dt_h
        assert extra_kwh == pytest.approx(n_toys * 0.5 * 24, rel=1e-9)
    finally:
        lemgrid.designs.unregister(toy_design.name)
