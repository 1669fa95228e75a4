"""Batteries and EV / shiftable-load windows are asset kinds of the registry (issue 11 item 2):
the scenario types map to them, and the generic code runs them through the registry."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from lemgrid.assets.battery import BatteryKind
from lemgrid.assets.kinds import (
    KindPlan,
    asset_kinds,
    kind_for_type,
    register_asset_kind,
    rule_order,
)
from lemgrid.errors import InputError
from lemgrid.scenario.config import AssetBase

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
scale: {pv: 2.0}
assets:
  - {type: battery, every: 3, capacity_kwh: 10, power_kw: 5}
  - {type: ev, every: 4, power_kw: 11, energy_kwh: 9}
  - {type: flexible_load, every: 2, energy_kwh: 1.5, power_kw: 2}
market: {design: none}
"""


def test_scenario_types_are_served_by_registered_kinds():
    kinds = asset_kinds()
    assert list(kinds)[:3] == ["battery", "energy_window", "heat_pump"]
    assert kind_for_type("battery") is kinds["battery"]
    assert kind_for_type("ev") is kind_for_type("flexible_load") is kinds["energy_window"]
    # Business-as-usual: the windows and heat pumps first, self-consumption batteries last.
    assert rule_order({"battery": 0, "energy_window": 0, "heat_pump": 0})[-1] == "battery"
    with pytest.raises(InputError, match="no asset kind serves type 'pv'"):
        kind_for_type("pv")


def test_a_kind_may_not_take_a_type_another_kind_serves():
    class Ev(AssetBase):
        type: Literal["ev"]

    class Other(BatteryKind):
        name = "ev"
        Config = Ev

    with pytest.raises(InputError, match="already registered"):
        register_asset_kind(Other())


@pytest.fixture(scope="module")
def scenario():
    from lemgrid.scenario import build_scenario, parse_scenario

    return build_scenario(parse_scenario(SCENARIO))


def test_the_builder_fills_the_kinds_tables(scenario):
    parts = scenario.participants
    assert set(parts.kinds) == {"battery", "energy_window"}
    assert len(parts.kinds["battery"]) == len(range(0, len(parts), 3))
    assert set(parts.kinds["energy_window"].kind) == {"ev", "flexible_load"}


def test_business_as_usual_runs_batteries_through_their_kind(scenario, monkeypatch):
    """Replace the battery kind's rule by an idle battery: business-as-usual delivery follows
    (nothing of the runner or the designs knows batteries by name)."""
    from lemgrid.sim.runner import deliver_without_market

    before = deliver_without_market(scenario)
    assert np.abs(before.series["battery_kw"]).max() > 0.1  # self-consumption cycles them

    def idle(self, table, net_kw, dt_h):
        n_t = net_kw.shape[0]
        return KindPlan(table.owner, np.zeros((n_t, len(table))),
                        np.tile(table.soc_initial * table.capacity_kwh, (n_t, 1)))

    monkeypatch.setattr(BatteryKind, "rule_dispatch", idle)
    after = deliver_without_market(scenario)
    assert np.abs(after.series["battery_kw"]).max() == 0.0
    owners = np.zeros(len(scenario.participants), bool)
    owners[scenario.participants.kinds["battery"].owner] = True
    # Without batteries, owners' metered injection changes; the others' does not.
    assert np.abs(after.metered_kw - before.metered_kw)[:, owners].max() > 0.1
    np.testing.assert_array_equal(after.metered_kw[:, ~owners], before.metered_kw[:, ~owners])
