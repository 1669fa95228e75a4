"""Bidding agents and asset rules: ZI-C ranges, ZIP learning directions, self-consumption
batteries, charging on arrival, and the optimising prosumer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.agents.dispatch import charge_on_arrival, self_consumption_battery
from lemgrid.agents.strategies import ZipTraders, random_limits
from lemgrid.assets.tables import Batteries, EnergyWindows
from lemgrid.errors import InputError


def battery(n=1, **kw):
    base = dict(owner=np.arange(n), name=np.array([f"b{i}" for i in range(n)]),
                capacity_kwh=np.full(n, 10.0), power_kw=np.full(n, 4.0),
                eta_charge=np.full(n, 0.95), eta_discharge=np.full(n, 0.95),
                soc_min=np.full(n, 0.1), soc_max=np.full(n, 0.9), soc_initial=np.full(n, 0.5),
                soc_final=np.full(n, 0.5))
    base.update(kw)
    return Batteries(**base)


def test_zic_limits_stay_between_feed_in_and_retail():
    draws = random_limits(0.30, 0.08, (1000,), np.random.default_rng(0))
    assert draws.min() >= 0.08 and draws.max() <= 0.30
    assert draws.std() > 0.05  # really random, not a constant
    with pytest.raises(InputError):
        random_limits(0.05, 0.08, (3,), np.random.default_rng(0))


def test_zip_margins_move_towards_a_deal_and_back():
    z = ZipTraders(4, 0.30, 0.08, 0.5, 0.0, 0.5, np.random.default_rng(1))
    buying = np.array([True, True, False, False])
    bid0, ask0 = z.bid().copy(), z.ask().copy()
    z.learn(buying, ~buying, np.zeros(4, bool), np.nan)  # nothing traded
    assert np.all(z.bid()[buying] > bid0[buying])  # buyers raise their bids
    assert np.all(z.ask()[~buying] < ask0[~buying])  # sellers lower their asks
    bid1, ask1 = z.bid().copy(), z.ask().copy()
    z.learn(buying, ~buying, np.ones(4, bool), 0.19)  # all filled at 0.19
    assert np.all(z.bid()[buying] <= np.maximum(bid1[buying], 0.19 * 1.0 + 1e-12))
    assert np.all((z.bid() >= 0.08 - 1e-12) & (z.bid() <= 0.30 + 1e-12))
    assert np.all((z.ask() >= 0.08 - 1e-12) & (z.ask() <= 0.30 + 1e-12))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_self_consumption_battery_keeps_its_limits_and_energy(seed):
    rng = np.random.default_rng(seed)
    net = rng.normal(0, 3, (48, 2))
    b = battery(2)
    out, soc = self_consumption_battery(net, b, 0.25)
    assert np.all(np.abs(out) <= b.power_kw + 1e-9)
    assert np.all(soc >= b.soc_min * b.capacity_kwh - 1e-9)
    assert np.all(soc <= b.soc_max * b.capacity_kwh + 1e-9)
    # It only serves its owner: it never exports or imports beyond the owner's need.
    assert np.all(out * net <= 1e-12)
    assert np.all(np.abs(out) <= np.abs(net) + 1e-9)
    # Energy: soc change = charged x eta - discharged / eta.
    charge, discharge = np.maximum(-out, 0), np.maximum(out, 0)
    expected = b.soc_initial * b.capacity_kwh + np.cumsum(
        (0.95 * charge - discharge / 0.95) * 0.25, axis=0)
    np.testing.assert_allclose(soc, expected, atol=1e-9)


def test_charge_on_arrival_fills_the_window_start():
    windows = EnergyWindows(owner=np.array([0, 1]), name=np.array(["ev", "wm"]),
                              kind=np.array(["ev", "flexible_load"]), start=np.array([2, 5]),
                              stop=np.array([10, 9]), energy_kwh=np.array([6.0, 1.0]),
                              power_kw=np.array([11.0, 2.0]))
    kw = charge_on_arrival(windows, 12, 0.25)
    np.testing.assert_allclose(kw.sum(axis=0) * 0.25, [6.0, 1.0])
    assert kw[2, 0] == 11.0 and kw[3, 0] == 11.0 and kw[4, 0] == pytest.approx(2.0)
    assert kw[5, 1] == 2.0 and kw[6, 1] == 2.0 and kw[7, 1] == 0.0


def test_optimizer_stores_cheap_energy_for_expensive_hours():
    """An optimising prosumer with a battery facing a forecast of cheap midday and expensive
    evening prices charges at midday and discharges in the evening (and a rule-based one cannot
    know to)."""
    from lemgrid.scenario import build_scenario, parse_scenario
    from lemgrid.session import DayAheadSession
    from lemgrid.sim.designs import own_schedules
    from lemgrid.settlement.bills import Prices

    scenario = build_scenario(parse_scenario("""
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
resolution: 60min
participants:
  - {id: opt, bus: "LV1.101 Bus 2", load: {profile: H0-A, annual_kwh: 4000},
     assets: [{type: battery, capacity_kwh: 10, power_kw: 5}]}
"""))
    forecast = np.where((np.arange(24) >= 10) & (np.arange(24) < 15), 0.10, 0.30)
    parts = scenario.participants
    session = DayAheadSession(
        scenario=scenario, start=0, stop=24, load_kw=parts.load_p_kw, pv_kw=parts.pv_p_kw,
        kinds=parts.kinds,
        prices=Prices(0.25, 0.08, 0.08, 0.02, 0.0, 0.0, 0.33, 0.08), agents=np.array(["optimizer"]),
        rng=np.random.default_rng(0), zip_traders=None, price_forecast=forecast,
        background_p_kw=scenario.background_p_kw, q_kvar=-parts.load_q_kvar)
    plan = own_schedules(session)
    battery = plan.battery_kw[:, 0]
    assert battery[10:15].min() < -1.0  # charging in the cheap hours
    assert battery[15:].max() > 1.0  # discharging later
    # It ends the day with the energy its self-consumption rule would leave (here: the initial
    # 5 kWh less what that rule would have discharged into the load).
    rules = self_consumption_battery(parts.pv_p_kw - parts.load_p_kw, parts.batteries, 1.0)[1]
    assert rules[-1, 0] < 5.0
    assert plan.soc_kwh[-1, 0] == pytest.approx(rules[-1, 0], abs=1e-6)
