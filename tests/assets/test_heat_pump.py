"""The heat pump with thermal storage (lemgrid.assets.heat_pump) against hand calculations, and
in the designs: comfort band in every interval, load shifted by the community, flexibility
offered and activated by the DSO."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lemgrid.assets.heat_pump import HEAT_PUMP, HeatPumpKind, HeatPumps, carnot_cop, thermostat
from lemgrid.assets.kinds import KindPlan
from lemgrid.errors import InfeasibleError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BAND_TOL = 1e-6


def hand_table(heat_kw, cop=3.0, power_kw=2.0, e_initial=6.0, loss_per_h=0.0):
    """One heat pump: 2 kW, store band [2, 10] kWh_th, thermostat on below 4 kWh_th."""
    heat = np.atleast_2d(np.asarray(heat_kw, float))
    return HeatPumps(
        owner=np.array([0]), name=np.array(["hp"]), power_kw=np.array([power_kw]),
        e_min_kwh_th=np.array([2.0]), e_max_kwh_th=np.array([10.0]),
        e_initial_kwh_th=np.array([e_initial]), loss_per_h=np.array([loss_per_h]),
        deadband=np.array([0.25]), on_initial=np.array([False]), heat_kw=heat,
        cop=np.full(heat.shape, cop))


def test_carnot_cop_by_hand():
    # 0.45 x 308.15 K / 35 K and / 45 K; 30 C outdoor would give 27.7, capped at 7.
    np.testing.assert_allclose(carnot_cop(np.array([0.0, -10.0, 30.0]), 35.0, 0.45, 7.0),
                               [0.45 * 308.15 / 35, 0.45 * 308.15 / 45, 7.0], rtol=1e-12)


def test_thermostat_by_hand():
    # 1 kW_th demand for 6 h, 1-hour intervals, COP 3. Store: 6 -> 5 -> 4 (not below the
    # 4 kWh_th threshold yet) -> would be 3: on at 2 kW (+6) = 9 -> 2/3 kW fills it to 10, off
    # -> 9 -> 8.
    p, e = thermostat(hand_table(np.ones(6)), dt_h=1.0)
    np.testing.assert_allclose(p[:, 0], [0, 0, 2, 2 / 3, 0, 0], atol=1e-12)
    np.testing.assert_allclose(e[:, 0], [5, 4, 9, 10, 9, 8], atol=1e-12)


def test_thermostat_carries_its_state_into_the_next_day():
    # Day 1 ends heating (hour 2 of the hand case: on, store 9 of 10): day 2 goes on heating
    # (2/3 kW fills it to 10 after the 1 kWh_th drawn) instead of waiting for the threshold.
    kind = HeatPumpKind()
    table = hand_table(np.ones(6))
    p, e = thermostat(kind.window(table, 0, 3), 1.0)
    following = kind.window(kind.carry(table, KindPlan(table.owner, -p, e)), 3, 6)
    assert following.on_initial[0] and following.e_initial_kwh_th[0] == pytest.approx(9.0)
    p2, e2 = thermostat(following, 1.0)
    whole_p, whole_e = thermostat(table, 1.0)
    np.testing.assert_allclose(np.r_[p[:, 0], p2[:, 0]], whole_p[:, 0], atol=1e-12)
    np.testing.assert_allclose(np.r_[e[:, 0], e2[:, 0]], whole_e[:, 0], atol=1e-12)


def test_thermostat_with_standing_loss_by_hand():
    # 10 % per hour lost: 6 x 0.9 - 1 = 4.4 (above 4), 4.4 x 0.9 - 1 = 2.96 < 4: on at 2 kW.
    p, e = thermostat(hand_table(np.ones(2), loss_per_h=0.1), dt_h=1.0)
    np.testing.assert_allclose(e[:, 0], [4.4, 2.96 + 6.0], atol=1e-12)
    np.testing.assert_allclose(p[:, 0], [0.0, 2.0], atol=1e-12)


def test_demand_beyond_the_heat_pump_is_refused_naming_it():
    # At most 6 kW_th: the store goes 6 -> 9 -> 6, then 6 - 12 + 6 = 0 < 2.
    with pytest.raises(InfeasibleError, match="heat pump 'hp': interval 2"):
        thermostat(hand_table([3.0, 9.0, 12.0]), dt_h=1.0)


def test_community_refuses_demand_no_schedule_can_meet():
    from lemgrid.market.community import solve_community

    # 6 -> 6 + 6 - 9 = 3 -> 3 + 6 - 9 = 0 < 2 even at full power from the start.
    table = hand_table([9.0, 9.0, 9.0])
    with pytest.raises(InfeasibleError, match="heat pump 'hp': interval 1.*whatever the schedule"):
        solve_community(community_problem(table, [0, 0, 0], final_e=2.0))


def community_problem(table, pv_kw, final_e, import_price=0.30, export_price=0.05):
    from lemgrid.market.community import CommunityProblem

    n_t = len(pv_kw)
    return CommunityProblem(
        ids=np.array(["house"]), bus=np.array([0]), dt_h=1.0, load_p_kw=np.zeros((n_t, 1)),
        pv_p_kw=np.asarray(pv_kw, float)[:, None], import_eur_per_kwh=np.full(n_t, import_price),
        export_eur_per_kwh=np.full(n_t, export_price), curtailment_eur_per_kwh=export_price,
        kinds={"heat_pump": table}, kinds_final_state={"heat_pump": np.array([final_e])})


def test_community_heats_with_the_pv_surplus_by_hand():
    """6 h of 1 kW_th, COP 3, 3 kW of PV in hour 4 only; retail 0.30, feed-in 0.05 EUR/kWh.

    The thermostat (above) draws 2 + 2/3 kWh in hours 2-3 and exports all PV: it pays
    8/3 x 0.30 - 3 x 0.05 = 0.65 EUR. The store has to gain 8 - 6 + 6 = 8 kWh_th = 8/3 kWh_el.
    The community runs the heat pump at its full 2 kW in the PV hour (the store, at 2 kWh_th by
    then, takes 6 kWh_th) and imports only the last 2/3 kWh: 2/3 x 0.30 - 1 x 0.05 = 0.15 EUR."""
    from lemgrid.market.community import solve_community

    table = hand_table(np.ones(6))
    pv = [0, 0, 0, 0, 3, 0]
    bau_p, bau_e = thermostat(table, 1.0)
    result = solve_community(community_problem(table, pv, final_e=bau_e[-1, 0]))
    plan = result.kinds["heat_pump"]
    p, e = -plan.output_kw[:, 0], plan.state[:, 0]
    assert p[4] == pytest.approx(2.0, abs=1e-9)
    assert p.sum() == pytest.approx(8 / 3, abs=1e-9)
    assert result.retailer_cost_eur == pytest.approx(2 / 3 * 0.30 - 1 * 0.05, abs=1e-9)
    bau_cost = bau_p[:, 0].sum() * 0.30 - 3 * 0.05
    assert bau_cost == pytest.approx(0.65, abs=1e-12)
    # Drawn in the hours without PV: 8/3 kWh by the thermostat, 2/3 kWh in the community.
    no_pv = np.array(pv) == 0
    assert bau_p[no_pv, 0].sum() == pytest.approx(8 / 3) and p[no_pv].sum() == pytest.approx(2 / 3)
    # Comfort band and the store's balance: e_t = e_{t-1} + 3 p_t - 1.
    assert (e >= 2 - BAND_TOL).all() and (e <= 10 + BAND_TOL).all()
    np.testing.assert_allclose(np.diff(np.r_[6.0, e]), 3 * p - 1, atol=1e-9)
    assert e[-1] >= bau_e[-1, 0] - BAND_TOL


def test_flexibility_offers_keep_the_band_with_rebound_by_hand():
    """Thermostat plan of the hand case: [0, 0, 2, 2/3, 0, 0] kW, store [5, 4, 9, 10, 9, 8].

    Up at hour 2 (draw less): the store may lose at most min(later store) - 2 = 6 kWh_th, and
    hours 3-5 can make up (2 - 2/3) + 2 + 2 = 16/3 kW x 3 = 16 kWh_th: 2 kW (all it draws).
    Down at hour 3 (draw more): the store is full at hour 3: nothing."""
    kind = HeatPumpKind()
    table = hand_table(np.ones(6))
    p, e = thermostat(table, 1.0)
    plan = KindPlan(owner=table.owner, output_kw=-p, state=e)
    offers = kind.offers(table, plan, np.arange(6), 1.0)
    up = {int(t): kw for t, kw, d in zip(offers.interval, offers.kw, offers.direction) if d == 1}
    down = {int(t): kw for t, kw, d in zip(offers.interval, offers.kw, offers.direction) if d == -1}
    assert up[2] == pytest.approx(2.0)
    assert 3 not in down
    # Down at hour 0: at most 2 kW, the store (its highest later level is 10) has no room
    # before hour 3 -> 0; the offer is absent. Down at hour 4: room 10 - 9 = 1 kWh_th ->
    # 1/3 kW, and the heat later intervals draw is 0: nothing to leave out -> absent.
    assert 0 not in down and 4 not in down
    # Activate 2 kW up at hour 2 (6 kWh_th not made): hour 3 draws 2 instead of 2/3 kW
    # (+4 kWh_th), hour 4 the last 2 kWh_th (2/3 kW); the store: 3, 8, then 9 as planned.
    after = kind.apply(table, plan, np.array([0]), np.array([2]), np.array([2.0]), 1.0)
    p2, e2 = -after.output_kw[:, 0], after.state[:, 0]
    np.testing.assert_allclose(p2, [0, 0, 0, 2, 2 / 3, 0], atol=1e-9)
    np.testing.assert_allclose(e2, [5, 4, 3, 8, 9, 8], atol=1e-9)
    assert (e2 >= 2 - BAND_TOL).all() and (e2 <= 10 + BAND_TOL).all()
    np.testing.assert_allclose(e2[-2:], e[-2:, 0], atol=1e-9)  # back on its planned level
    assert p2.sum() == pytest.approx(p[:, 0].sum())  # the energy is moved, not lost (COP equal)
    # The budget rows accept this activation and refuse twice as much.
    rows = kind.budgets(table, plan, offers, 1.0)
    k = int(np.flatnonzero((offers.interval == 2) & (offers.direction == 1))[0])
    for scale, ok in ((1.0, True), (2.0, False)):
        kw = np.zeros(len(offers))
        kw[k] = 2.0 * scale
        assert all(coef @ kw[pos] <= upper + 1e-9 for pos, coef, upper in rows) is ok


# --- in the designs ------------------------------------------------------------------------

@pytest.fixture()
def recorded_states(monkeypatch):
    """Every session's heat-pump plan, as the runner carries it into the next session."""
    states: list[tuple[HeatPumps, KindPlan]] = []
    carry = HeatPumpKind.carry

    def spy(self, table, plan):
        states.append((table, plan))
        return carry(self, table, plan)

    monkeypatch.setattr(HeatPumpKind, "carry", spy)
    return states


def assert_in_band(states):
    assert states
    for table, plan in states:
        assert (plan.state >= table.e_min_kwh_th - BAND_TOL).all()
        assert (plan.state <= table.e_max_kwh_th + BAND_TOL).all()


@pytest.fixture(scope="module")
def heat_pumps():
    from lemgrid.scenario import load_scenario

    return load_scenario(EXAMPLES / "heat-pumps.yaml", days=1)


def test_heat_pumps_shift_into_the_pv_surplus_under_the_community(heat_pumps, recorded_states):
    from lemgrid.sim.runner import simulate

    bau = simulate(heat_pumps, "none")
    assert_in_band(recorded_states)
    recorded_states.clear()
    community = simulate(heat_pumps, "community")
    assert_in_band(recorded_states)  # business-as-usual reference and the community's plans
    table, plan = recorded_states[-1]
    scenario_table = heat_pumps.participants.kinds["heat_pump"]
    bau_p, _ = thermostat(scenario_table, heat_pumps.dt_h)
    community_p = -plan.output_kw
    parts = heat_pumps.participants
    surplus = (parts.pv_p_kw - parts.load_p_kw).sum(axis=1) > 0  # the community exports
    dt = heat_pumps.dt_h
    # At least the same heat (the store ends at least as full as the thermostat leaves it),
    # made in the warm afternoon (higher COP: less electricity) and in the surplus hours.
    heat = (table.cop.T * community_p).sum() * dt
    bau_heat = (scenario_table.cop.T * bau_p).sum() * dt
    assert heat >= bau_heat - 1e-6
    assert community_p.sum() < bau_p.sum()
    assert bau_p[surplus].sum() < 0.1 * bau_p.sum()  # the thermostat heats at night
    assert community_p[surplus].sum() > 0.5 * community_p.sum()
    assert community.kpis["self_sufficiency"] > bau.kpis["self_sufficiency"]
    assert community.cost_eur.sum() < bau.cost_eur.sum()


def test_heat_pump_energy_balance_in_the_scenario(heat_pumps):
    """Stored heat change = COP x electricity - heat demand, interval by interval; the COP of
    the example's 2 C midnight is 0.45 x 308.15 / 33."""
    table = heat_pumps.participants.kinds["heat_pump"]
    assert table.cop[0, 0] == pytest.approx(0.45 * 308.15 / 33, rel=1e-12)
    p, e = thermostat(table, heat_pumps.dt_h)
    dt = heat_pumps.dt_h
    change = np.diff(np.vstack([table.e_initial_kwh_th, e]), axis=0)
    np.testing.assert_allclose(change, (table.cop.T * p - table.heat_kw.T) * dt, atol=1e-9)
    # Heat demand of the day: 6,000 kWh_th x (the profile's share of the year on that day).
    from lemgrid.assets.profile_library import standard_profile

    year = standard_profile("Air_Parallel_1")
    day = np.flatnonzero(heat_pumps.time_index[0] == __import__("lemgrid.grid.profiles",
                                                               fromlist=["x"]).simbench_time_index(
        len(year)))
    share = year[day[0]:day[0] + 96].sum() / year.sum()
    assert table.heat_kw[0].sum() * dt == pytest.approx(6000 * share, rel=1e-9)


@pytest.mark.slow
def test_ipower_dso_activates_heat_pumps_and_keeps_the_band(recorded_states):
    """iPower: the heat pumps' thermostats switch on together at midnight and overload the
    transformer; the DSO buys their flexibility (drawing less now, the tank makes it up later)
    and the comfort band holds in every interval of the delivered plans."""
    from lemgrid.scenario import load_scenario
    from lemgrid.sim.runner import simulate

    scenario = load_scenario(EXAMPLES / "systems" / "ipower.yaml")
    result = simulate(scenario)
    assert_in_band(recorded_states)  # business-as-usual and the plans after the DSO
    activations = result.tables["flex_activations"]
    heat = activations[activations["kind"] == "heat_pump"]
    assert len(heat) and (heat["kw"] > 0).all() and heat["delivered"].all()
    assert set(heat["direction"]) <= {"up", "down", 1, -1}
    assert result.kpis["voltage_violation_intervals"] == 0
    assert result.kpis["overload_intervals"] == 0
    # The activated heat pumps' draw changed: the delivered plans differ from the thermostat.
    table = scenario.participants.kinds["heat_pump"]
    bau_p, _ = thermostat(table, scenario.dt_h)
    delivered_p = -recorded_states[-1][1].output_kw
    assert np.abs(delivered_p - bau_p).max() > 0.1
    # Out of the congested intervals: less drawn there, the heat made up later (the stores end
    # the day where the thermostat leaves them: the heat is only moved; the electricity differs
    # by the COP of the hours it moves to).
    t = scenario.time_index.get_indexer(pd.to_datetime(heat["interval"]))
    k = heat["resource"].str.split(":").str[1].astype(int).to_numpy()
    moved = np.zeros_like(bau_p, bool)
    moved[t, k] = True
    assert delivered_p[moved].sum() < bau_p[moved].sum() - 0.5 * heat["kw"].sum()
    _, bau_e = thermostat(table, scenario.dt_h)
    np.testing.assert_allclose(recorded_states[-1][1].state[-1], bau_e[-1], atol=1e-6)
    np.testing.assert_allclose((table.cop.T * delivered_p).sum(axis=0),
                               (table.cop.T * bau_p).sum(axis=0), atol=1e-6)
    np.testing.assert_allclose(delivered_p.sum(axis=0), bau_p.sum(axis=0), rtol=0.01)


def test_optimising_agents_schedule_their_heat_pumps_within_the_band(recorded_states):
    """Optimising agents (each alone against its price forecast) run their heat pumps through
    the same LP block; the band holds and every store ends the day at least as full as the
    thermostat leaves it."""
    from lemgrid.scenario import load_scenario
    from lemgrid.sim.runner import simulate

    scenario = load_scenario(EXAMPLES / "heat-pumps.yaml", days=1,
                             agents={"default": "optimizer"}, market={"design": "uniform"})
    simulate(scenario)
    assert_in_band(recorded_states)
    table = scenario.participants.kinds["heat_pump"]
    _, bau_e = thermostat(table, scenario.dt_h)
    _, plan = recorded_states[-1]
    assert (plan.state[-1] >= bau_e[-1] - BAND_TOL).all()
    assert np.abs(plan.state - bau_e).max() > 0.1  # scheduled, not the thermostat


@pytest.mark.parametrize(("asset", "field", "message"), [
    ({"powr_kw": 3}, "assets[0].powr_kw", "Extra inputs"),
    ({"soc_initial": 0.1}, "assets[0]", "comfort band"),
    ({"cop": {"outdoor_c": 40}}, "assets[0].cop", "below supply_c"),
    ({"profile": "Air_Paralel_1"}, "assets[0].profile", "did you mean Air_Parallel_1"),
])
def test_bad_heat_pump_input_names_the_field_and_line(tmp_path, asset, field, message):
    import yaml
    from typer.testing import CliRunner

    from lemgrid.cli import app

    config = yaml.safe_load((EXAMPLES / "heat-pumps.yaml").read_text())
    config["days"] = 1
    config["assets"][0].update(asset)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(app, ["simulate", str(path), "--no-report", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert field in result.output and message in result.output, result.output


def test_dso_price_for_an_unknown_kind_is_refused():
    from pydantic import ValidationError

    from lemgrid.scenario.config import FlexPricesConfig

    with pytest.raises(ValidationError, match="unknown asset kind 'heat_pmp'"):
        FlexPricesConfig.model_validate({"heat_pmp": 0.02})
    assert FlexPricesConfig.model_validate({"heat_pump": 0.02}).by_kind == {"heat_pump": 0.02}


def test_optimize_schedules_heat_pumps_over_the_horizon(recorded_states):
    from lemgrid.assets.heat_pump import thermostat
    from lemgrid.scenario import load_scenario
    from lemgrid.sim.runner import optimize

    two_days = load_scenario(EXAMPLES / "heat-pumps.yaml", days=2)
    optimize(two_days, "community")
    table = two_days.participants.kinds["heat_pump"]
    session_table, plan = recorded_states[-1]  # the one session's plan, carried at its end
    assert plan.state.shape == (len(two_days.time_index), len(table))
    assert_in_band([(session_table, plan)])
    # The stores' balance: e_t = e_{t-1} + (COP p - q) dt.
    dt = two_days.dt_h
    change = np.diff(np.vstack([table.e_initial_kwh_th, plan.state]), axis=0)
    np.testing.assert_allclose(change, (table.cop.T * -plan.output_kw - table.heat_kw.T) * dt,
                               atol=1e-6)
    # P2P: the owners' thermostats over the horizon, their draw is traded (or bought).
    p2p = optimize(two_days, "p2p")
    drawn, _ = thermostat(table, dt)
    no_heat = two_days.participants.load_p_kw - two_days.participants.pv_p_kw
    assert drawn.sum(axis=1).max() > 1.0  # the heat pumps' draw is far beyond the tolerance
    np.testing.assert_allclose(-p2p.scheduled_kw.sum(axis=1),
                               no_heat.sum(axis=1) + drawn.sum(axis=1), atol=1e-9)


@pytest.mark.slow
def test_network_constrained_community_moves_heat_pumps_out_of_congestion(recorded_states):
    """iPower's feeder with only its heat pumps and a 50 % loading limit: their thermostats
    overload the transformer; the network-constrained community schedules them around it."""
    import yaml

    from lemgrid.scenario import load_scenario
    from lemgrid.sim.runner import simulate

    config = yaml.safe_load((EXAMPLES / "systems" / "ipower.yaml").read_text())
    heat_pumps = [a for a in config["assets"] if a["type"] == "heat_pump"]
    scenario = load_scenario(EXAMPLES / "systems" / "ipower.yaml", assets=heat_pumps, dso=None,
                             aggregators=[], grid_limits={"max_loading_percent": 50},
                             resolution="60min")
    bau = simulate(scenario, "none")
    congested = np.nanmax(bau.loading_percent, axis=1) > 50 + 0.05
    assert congested.sum() > 0 and bau.kpis["overload_intervals"] > 0
    recorded_states.clear()
    result = simulate(scenario, "community-constrained")
    assert result.kpis["overload_intervals"] == 0
    assert_in_band(recorded_states)
    table = scenario.participants.kinds["heat_pump"]
    bau_p, _ = thermostat(table, scenario.dt_h)
    scheduled_p = -recorded_states[-1][1].output_kw
    assert scheduled_p[congested].sum() < 0.8 * bau_p[congested].sum()
