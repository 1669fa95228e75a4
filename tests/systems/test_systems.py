"""The review's systems (examples/systems/): each scenario runs for a day, its grid problem really
occurs, the DSO's markets remove it (AC power flow of what is delivered), the money balances, the
features the system is configured with are exercised, and its report renders in Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lemgrid.scenario import load_scenario
from lemgrid.scenario.config import clock_hours
from lemgrid.sim.outputs import write_simulation
from lemgrid.sim.runner import simulate, split_sessions

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS_DIR = ROOT / "examples" / "systems"

#: Every system of the review's Table 3 (file stem) and the problems its grid must show in the
#: traffic light's reasons (overload: congestion management; under/overvoltage: voltage
#: management), as the scenario files' headers state.
SYSTEMS = {
    "ipower": {"overload", "undervoltage"},
    "interflex": {"overload"},
    "empower": {"overload"},
    "dominoes": {"overload"},
    "pebble": {"overload"},
    "smartnet": {"overload", "overvoltage"},
    "enera": {"overload"},
    "nodes": {"overload"},
    "gopacs": {"overload"},
    "piclo-flex": {"overload"},
    "cornwall": {"overload"},
    "storenet": {"overload"},
}
PATHS = sorted(SYSTEMS_DIR.glob("*.yaml"))


def test_every_system_of_the_review_has_a_scenario_and_a_docs_row():
    assert {p.stem for p in PATHS} == set(SYSTEMS)
    docs = (ROOT / "docs" / "systems.md").read_text(encoding="utf-8")
    for path in PATHS:
        assert f"examples/systems/{path.name}" in docs, path.name


@pytest.fixture(scope="module", params=PATHS, ids=[p.stem for p in PATHS])
def run(request):
    scenario = load_scenario(request.param, days=1)
    return request.param.stem, scenario, simulate(scenario)


def _capacity_kw(scenario, used: pd.DataFrame) -> np.ndarray:
    """Most a resource can move in one direction and interval: a battery twice its power (its
    schedule may be reversed), an EV or shiftable load its power, PV what it generates (x1.5 for
    day-ahead forecast errors)."""
    parts = scenario.participants
    t = scenario.time_index.get_indexer(pd.to_datetime(used.interval))
    kind, index = used.resource.str.split(":", expand=True).T.to_numpy()
    index = index.astype(int)
    sessions = split_sessions(parts.sessions, 0, len(scenario.time_index))
    limit = np.zeros(len(used))
    for k in range(len(used)):
        if kind[k] == "battery":
            limit[k] = 2 * parts.batteries.power_kw[index[k]]
        elif kind[k] in ("ev", "flexible_load"):
            limit[k] = sessions.power_kw[index[k]]
        elif kind[k] == "pv":
            limit[k] = 1.5 * parts.pv_p_kw[t[k], index[k]]
    return limit


@pytest.mark.slow
def test_problem_occurs_and_the_dso_removes_it(run):
    name, scenario, result = run
    k, config = result.kpis, scenario.config
    # The problem really occurs on this grid without the market's grid handling ...
    assert k["bau_overload_intervals"] + k["bau_voltage_violation_intervals"] > 0
    if config.market.design == "community-constrained":
        # ... and a grid-aware matching (PEBBLE) already avoids it in the schedule.
        assert k["forecast_violation_intervals_before_flexibility"] == 0
    else:
        assert k["forecast_violation_intervals_before_flexibility"] > 0
    state = result.tables["grid_state"]
    assert len(state) == k["intervals"] and set(state.state) <= {"green", "amber", "red"}
    reasons = " ".join(state.reason[state.state != "green"])
    for problem in SYSTEMS[name]:
        assert problem in reasons, (name, problem)
    # After the DSO (flexibility, TSO activations, direct control): none left at delivery.
    assert k["voltage_violation_intervals"] == 0 and k["overload_intervals"] == 0
    assert abs(k["budget_gap_eur"]) < 0.005


@pytest.mark.slow
def test_configured_features_are_exercised(run):
    _, scenario, result = run
    k, dso = result.kpis, scenario.config.dso
    flex, coordination = dso.flexibility, dso.coordination
    acts = result.tables["flex_activations"]
    used = acts[acts.direction != "reserved"]
    market = used[used.service != "red"]
    red = used[used.service == "red"]
    dt_h = result.dt_h

    if not flex.enabled:  # DOMINOES: the DSO validates, no flexibility market
        assert market.empty and k["red_intervals"] > 0
    elif k["forecast_violation_intervals_before_flexibility"] > 0:
        assert not market[market.buyer == "DSO"].empty
    np.testing.assert_allclose(red.price_eur_per_kwh, dso.red.regulated_price_eur_per_kwh)

    # The pay rule: pay-as-bid pays the offer's price, pay-as-clear at least that.
    bid = market.kind.map(flex.prices.model_dump()).to_numpy()
    rule = np.where(market.buyer == "TSO", coordination.pricing, flex.pricing)
    paid = market.price_eur_per_kwh.to_numpy()
    np.testing.assert_allclose(paid[rule == "pay-as-bid"], bid[rule == "pay-as-bid"], atol=1e-12)
    assert np.all(paid[rule == "pay-as-clear"] >= bid[rule == "pay-as-clear"] - 1e-12)

    assert set(market.kind) <= set(flex.kinds)
    aggregators = {a.id for a in scenario.config.aggregators}
    if aggregators:
        assert k["aggregator_eur"] > 0
        assert aggregators & set(market.provider)
    if flex.providers == "aggregators":
        assert set(market.provider) <= aggregators

    if coordination.tso_requests:
        assert not market[market.buyer == "TSO"].empty and k["tso_flex_cost_eur"] > 0

    if flex.lead_time == "long-term":
        reserved = acts[acts.direction == "reserved"]
        assert len(reserved) > 0 and k["availability_eur"] > 0
        assert reserved.availability_eur.sum() == pytest.approx(k["availability_eur"])
        clock = pd.to_datetime(market.interval)
        hours = clock.dt.hour + clock.dt.minute / 60
        window = flex.reservation
        assert hours.between(clock_hours(window.start), clock_hours(window.end) - dt_h).all()

    # Not delivered: not paid, penalised per kWh.
    missed = used[~used.delivered.astype(bool)]
    assert (missed.utilisation_eur == 0).all()
    np.testing.assert_allclose(missed.penalty_eur,
                               missed.kw * dt_h * flex.non_delivery_penalty_eur_per_kwh)

    # No resource is activated twice for the same interval and capacity (DSO, TSO, red).
    per = used.groupby(["resource", "interval", "direction"], as_index=False).kw.sum()
    assert np.all(per.kw.to_numpy() <= _capacity_kw(scenario, per) + 1e-6)


@pytest.mark.slow
def test_outputs_and_report_render(run, tmp_path, rendered):
    _, _, result = run
    paths = write_simulation(result, tmp_path)
    for name in ("kpis", "bills", "intervals", "grid_state", "flex_activations", "report"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    page = rendered(paths["report"])
    assert page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length") > 0
    headings = page.eval_on_selector_all("section h2", "els => els.map(e => e.textContent)")
    assert "Traffic light" in headings and "Where flexibility was bought" in headings
    # The traffic light plots one bar per interval, coloured by state.
    traces = page.evaluate("() => { const el = [...document.querySelectorAll('section')]"
                           ".find(s => s.querySelector('h2').textContent === 'Traffic light')"
                           ".querySelector('.js-plotly-plot');"
                           " return el._fullData.map(d => [d.name, (d.x || []).length]); }")
    counts = result.tables["grid_state"].state.value_counts()
    assert {name: n for name, n in traces if n} == counts.to_dict()
