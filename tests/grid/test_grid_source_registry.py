"""A grid source registered from outside the package is a grid like the built-in ones: the
scenario's ``grid:``, the power flow and the simulator read it by its spec."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lemgrid.errors import InputError
from lemgrid.grid import sources
from lemgrid.grid.sources import grid_sources, load_grid, parse_grid_spec, register_grid_source


class CigreLV:
    """``cigre-lv``: the CIGRE European LV benchmark (Strunz et al., CIGRE TF C6.04.02, 2014),
    built by pandapower."""

    name = "cigre-lv"
    forms = "'cigre-lv'"

    def parse(self, spec: str) -> str | None:
        return "" if spec.lower() == "cigre-lv" else None

    def load_net(self, value: str):
        import pandapower.networks as pn

        return pn.create_cigre_network_lv()

    def cache_key(self, value: str) -> str | None:
        return None


@pytest.fixture
def cigre_source():
    before = dict(sources._SOURCES)
    yield register_grid_source(CigreLV())
    sources._SOURCES.clear()
    sources._SOURCES.update(before)


def test_builtin_sources_keep_their_specs():
    assert list(grid_sources()) == ["simbench", "ieee33", "json"]
    assert parse_grid_spec(" simbench:1-LV-rural1--0-sw ") == ("simbench", "1-LV-rural1--0-sw")
    assert parse_grid_spec("IEEE33") == ("ieee33", "")
    assert parse_grid_spec("net.json") == ("json", "net.json")
    with pytest.raises(InputError, match="missing SimBench code"):
        parse_grid_spec("simbench:")
    with pytest.raises(InputError, match="unknown grid 'cigre-lv'"):
        parse_grid_spec("cigre-lv")


def test_a_registered_source_is_loaded_and_its_power_flow_equals_pandapowers(cigre_source):
    import pandapower as pp

    import lemgrid

    assert parse_grid_spec("cigre-lv") == ("cigre-lv", "")
    with pytest.raises(InputError, match="'cigre-lv'"):
        parse_grid_spec("cigre-mv")  # the error lists the registered forms
    assert load_grid("cigre-lv").network.n_bus == 44
    voltages = lemgrid.powerflow("cigre-lv").voltages()
    net = CigreLV().load_net("")
    pp.runpp(net)
    expected = pd.Series(net.res_bus.vm_pu.to_numpy(), index=net.bus.name.to_numpy())
    np.testing.assert_allclose(voltages.loc[0, expected.index], expected, atol=1e-6)


def test_a_scenario_and_a_simulation_on_a_registered_source(cigre_source):
    import lemgrid

    scenario = lemgrid.load_scenario({
        "grid": "cigre-lv", "start": "2016-06-01", "days": 1, "resolution": "60min",
        "default_profiles": {"load": "H0-A", "pv": "PV3"},
        "assets": [{"type": "pv", "bus": "Bus R11", "kwp": 10}],
        "market": {"design": "uniform"},
    })
    result = lemgrid.simulate(scenario, "uniform")
    metered_kw = result.participant_frame("metered_kw")
    assert metered_kw.shape == (24, len(scenario.participants.ids))
    assert set(result.bus_frame().columns) == set(CigreLV().load_net("").bus.name)
    bought = result.participant_frame("local_bought_kwh").to_numpy().sum()
    sold = result.participant_frame("local_sold_kwh").to_numpy().sum()
    assert bought > 0 and bought == pytest.approx(sold, abs=1e-6)
