"""The review's systems (examples/systems/): each scenario runs for a day, its grid problem really
occurs, the DSO's markets remove it (AC power flow of what is delivered), the money balances, the
features the system is configured with are exercised, and its report renders in Chromium.

The checks can fail: where red control is off the flexibility market alone must remove the
problem (and some scenarios run so); where docs/systems.md reports no red interval there is none;
each resource's activations per interval, over DSO, TSO and red control together, stay within
what it could move from its schedule; pay-as-clear pays one price per product."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lemgrid.scenario import load_scenario
from lemgrid.scenario.config import clock_hours
from lemgrid.sim.outputs import write_simulation
from lemgrid.sim.runner import simulate, split_windows

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

_spec = importlib.util.spec_from_file_location("measure_systems",
                                               Path(__file__).with_name("measure_systems.py"))
measure_systems = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(measure_systems)


def _docs_table() -> dict[str, list[str]]:
    return measure_systems.parse_table((ROOT / "docs" / "systems.md").read_text(encoding="utf-8"))


def test_every_system_of_the_review_has_a_scenario_and_a_docs_row():
    assert {p.stem for p in PATHS} == set(SYSTEMS)
    docs = (ROOT / "docs" / "systems.md").read_text(encoding="utf-8")
    for path in PATHS:
        assert f"examples/systems/{path.name}" in docs, path.name
    assert set(_docs_table()) == set(SYSTEMS)


def test_some_scenarios_rely_on_the_flexibility_market_alone():
    """Red control (direct curtailment) would remove any problem by itself: at least one system
    runs without it, so that "problem removed" is the flexibility market's doing there."""
    alone = [p.stem for p in PATHS if (dso := load_scenario(p).config.dso) is not None
             and dso.flexibility.enabled and not dso.red.enabled]
    assert alone, "every scenario has red control on"


@pytest.fixture(scope="module", params=PATHS, ids=[p.stem for p in PATHS])
def run(request):
    scenario = load_scenario(request.param, days=1)
    return request.param.stem, scenario, simulate(scenario)


def _room_kw(scenario, first: pd.DataFrame) -> pd.DataFrame:
    """What each resource could move up and down at an interval from its schedule before any
    activation (``baseline_kw`` of its first activation there): a battery its power minus / plus
    its output, an EV or shiftable load its draw / its power minus its draw, PV what it feeds in
    (the offered forecast or the realised generation, whichever is larger)."""
    parts = scenario.participants
    t = scenario.time_index.get_indexer(pd.to_datetime(first.interval))
    kind, index = first.resource.str.split(":", expand=True).T.to_numpy()
    index = index.astype(int)
    windows = split_windows(parts.windows, 0, len(scenario.time_index))
    base = first.baseline_kw.to_numpy(float)
    up, down = np.zeros(len(first)), np.zeros(len(first))
    for k in range(len(first)):
        if kind[k] == "battery":
            power = parts.batteries.power_kw[index[k]]
            up[k], down[k] = power - base[k], power + base[k]
        elif kind[k] in ("ev", "flexible_load"):
            up[k], down[k] = base[k], windows.power_kw[index[k]] - base[k]
        elif kind[k] == "pv":
            down[k] = max(base[k], parts.pv_p_kw[t[k], index[k]])
        elif kind[k] == "heat_pump":  # baseline: its draw, between 0 and its power
            power = parts.kinds["heat_pump"].power_kw[index[k]]
            up[k], down[k] = base[k], power - base[k]
    return first.assign(up=up, down=down)


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
    assert k["nonconverged_intervals"] == 0 and k["violation_intervals"] == 0
    assert abs(k["budget_gap_eur"]) < 0.005
    acts = result.tables["flex_activations"]
    if not config.dso.red.enabled:
        # The flexibility market alone removed it: no direct control, nothing red.
        assert (acts.service != "red").all() and k["red_intervals"] == 0
        assert (state.state != "red").all()
    # Where docs/systems.md reports no red interval, there is none.
    documented = _docs_table()[name][measure_systems.RED_COLUMN]
    if documented == "0":
        assert k["red_intervals"] == 0, (name, k["red_intervals"])


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

    # The pay rule: pay-as-bid pays the offer's price; pay-as-clear one price per interval and
    # product (buyer, service, direction and - the DSO's prices are locational - bus), never
    # below any bid it accepted; the TSO's merit order one price per request across buses.
    bid = market.kind.map(flex.prices.model_dump()).to_numpy()
    tso_market = (market.buyer == "TSO").to_numpy() & (coordination.scheme == "local-first")
    rule = np.where(tso_market, coordination.pricing, flex.pricing)
    paid = market.price_eur_per_kwh.to_numpy()
    np.testing.assert_allclose(paid[rule == "pay-as-bid"], bid[rule == "pay-as-bid"], atol=1e-12)
    clear = market[rule == "pay-as-clear"].assign(bid=bid[rule == "pay-as-clear"])
    assert np.all(clear.price_eur_per_kwh >= clear.bid - 1e-12)
    product = ["interval", "buyer", "service", "direction"]
    largest = 0
    for keys, part in ((product + ["bus"], clear), (product, clear[clear.buyer == "TSO"])):
        prices = part.groupby(keys).price_eur_per_kwh
        assert np.all((prices.max() - prices.min()).to_numpy() <= 1e-12), keys
        largest = max(largest, int(prices.size().max()) if len(part) else 0)
    if "pay-as-clear" in rule:
        assert largest > 1  # some product has several activations: the check is not empty

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

    # No resource is activated twice for the same interval and capacity: over DSO, TSO and red
    # control together, each resource moves one way per interval, by at most what it could.
    key = ["resource", "interval"]
    assert (used.groupby(key).direction.nunique() == 1).all()
    room = _room_kw(scenario, used.drop_duplicates(key))  # first activation: schedule's baseline
    total = used.groupby(key + ["direction"]).kw.sum().unstack(fill_value=0.0)
    room = room.set_index(key).loc[total.index]
    for direction in ("up", "down"):
        if direction in total:
            excess = total[direction] - room[direction]
            assert excess.max() <= 1e-6, excess.idxmax()


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
