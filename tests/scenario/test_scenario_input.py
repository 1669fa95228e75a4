"""Nonsense in a scenario is refused with the field and the line (issue 10, item 21): booleans and
quoted numbers are no numbers, numbers stay within sane physical bounds, each market design has
typed options, and aggregators, agents and requests name participants and buses that exist."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from lemgrid.errors import InputError
from lemgrid.scenario import load_scenario, parse_scenario
from lemgrid.scenario.config import CommunityOptions, OrderOptions, P2POptions
from lemgrid.designs import design_options

RURAL = "simbench:1-LV-rural1--0-sw"
HEAD = f"# a scenario\ngrid: {RURAL}\nstart: 2016-06-01\n"


def scenario_file(tmp_path, body: str):
    path = tmp_path / "scenario.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return path


def refused(tmp_path, body: str) -> str:
    with pytest.raises(InputError) as err:
        load_scenario(scenario_file(tmp_path, body))
    return str(err.value)


@pytest.mark.parametrize("body, message", [
    # A 1 kWh battery on main:
    ("assets:\n  - {type: battery, every: 3, capacity_kwh: true, power_kw: 5}\n",
     "line 5: assets[0].capacity_kwh: Input should be a valid number (got True)"),
    ("assets:\n  - {type: battery, every: true, capacity_kwh: 5, power_kw: 5}\n",
     "line 5: assets[0].every: Input should be a valid integer (got True)"),
    ("days: true\n", "line 4: days: Input should be a valid number (got True)"),
    ("seed: false\n", "line 4: seed: Input should be a valid integer (got False)"),
    ("scale: {pv: true}\n", "line 4: scale.pv: Input should be a valid number (got True)"),
    ("tariffs: {import_eur_per_kwh: true}\n", "line 4: tariffs.import_eur_per_kwh: Input should "
                                              "be a valid number (got True)"),
    ("participants:\n  - {id: a, bus: 'LV1.101 Bus 4', pv_kwp: true}\n",
     "line 5: participants[0].pv_kwp: Input should be a valid number (got True)"),
    ("aggregators:\n  - {id: agg, every: 2, fee_share: true}\n",
     "line 5: aggregators[0].fee_share: Input should be a valid number (got True)"),
    ("market: {design: community, max_ac_iterations: true}\n",
     "line 4: market.max_ac_iterations: Input should be a valid integer (got True)"),
    ("market: {design: uniform, intraday: 1}\n",
     "line 4: market.intraday: Input should be a valid boolean (got 1)"),
    # Quoted numbers are text:
    ("days: '2'\n", "line 4: days: Input should be a valid number (got '2')"),
])
def test_booleans_and_text_are_not_numbers(tmp_path, body, message):
    assert message in refused(tmp_path, body)


@pytest.mark.parametrize("body, message", [
    ("assets:\n  - {type: battery, every: 3, capacity_kwh: 1e308, power_kw: 5}\n",
     "assets[0].capacity_kwh: Input should be less than or equal to 10000000"),
    ("assets:\n  - {type: pv, every: 3, kwp: 1e12}\n",
     "assets[0].kwp: Input should be less than or equal to 1000000"),
    ("tariffs: {import_eur_per_kwh: 1e300}\n",
     "tariffs.import_eur_per_kwh: Input should be less than or equal to 10"),
    ("tariffs: {network_eur_per_kwh: -0.1}\n",
     "tariffs.network_eur_per_kwh: Input should be greater than or equal to 0"),
    ("scale: {load: 1e9}\n", "scale.load: Input should be less than or equal to 100"),
    ("seed: -1\n", "seed: Input should be greater than or equal to 0"),
])
def test_numbers_beyond_sane_bounds_are_refused(tmp_path, body, message):
    assert message in refused(tmp_path, body)


def test_exponents_are_numbers(tmp_path):
    # PyYAML reads 1e3 as text; values are not coerced any more, so the loader reads it (YAML 1.2).
    scenario = load_scenario(scenario_file(
        tmp_path, "assets:\n  - {type: battery, every: 3, capacity_kwh: 1e1, power_kw: 5E0}\n"))
    assert scenario.participants.batteries.capacity_kwh.tolist() == [10.0] * 5
    assert scenario.participants.batteries.power_kw.tolist() == [5.0] * 5


# --- market options --------------------------------------------------------------------------

@pytest.mark.parametrize("market, message", [
    ("{design: uniform, intradya: true}", "line 4: market.intradya: Extra inputs are not permitted"),
    ("{design: community, intraday: true}", "line 4: market.intraday: Extra inputs"),
    ("{design: none, network: constrained}", "line 4: market.network: Extra inputs"),
    ("{design: p2p, method: exact}", "line 4: market.method: Input should be 'admm' or 'central'"),
    ("{design: community, network: sometimes}", "line 4: market.network: Input should be"),
    ("{design: community-constrained, network: ignore}",
     "market: design community-constrained clears within the grid's limits"),
    ("{design: magic}", "line 4: market.design: Input should be 'none', 'uniform'"),
])
def test_market_options_are_checked_when_the_file_is_read(tmp_path, market, message):
    # On main the market section was an untyped dict: typos were ignored, and a design's options
    # were checked only when that design ran.
    assert message in refused(tmp_path, f"market: {market}\n")


def test_unknown_market_key_in_block_style_names_its_line(tmp_path):
    message = refused(tmp_path, "market:\n  design: uniform\n\n  intradya: true\n")
    assert "scenario.yaml line 7: market.intradya: Extra inputs are not permitted" in message


def test_market_options_are_typed():
    config = parse_scenario(f"grid: {RURAL}\nmarket: {{design: uniform, intraday: true}}\n")
    assert isinstance(config.market, OrderOptions) and config.market.intraday is True
    config = parse_scenario(f"grid: {RURAL}\nmarket: {{network: constrained}}\n")
    assert isinstance(config.market, CommunityOptions) and config.market.network == "constrained"
    assert config.market.design == "community"  # the default design
    config = parse_scenario(f"grid: {RURAL}\nmarket: {{design: p2p, seller_share: 0.3}}\n")
    assert isinstance(config.market, P2POptions) and config.market.seller_share == 0.3


def test_options_of_the_scenarios_design_stay_out_of_another_design(tmp_path):
    """``simulate --design`` / ``compare --designs`` run other designs on the same file."""
    from lemgrid.sim.runner import simulate

    scenario = load_scenario(scenario_file(tmp_path, "days: 1\nmarket: {design: uniform, "
                                                     "intraday: true}\n"))
    community = design_options(scenario, "community")
    assert community == CommunityOptions()
    assert design_options(scenario, "continuous").intraday is True
    # On main: "market.intraday: intraday trading of deviations is built for the order-based
    # designs", so `compare` failed on this file for every design but the auctions.
    result = simulate(scenario, "none")
    assert result.design == "none"
    # An option that both designs have carries over, as before.
    scenario = load_scenario(scenario_file(tmp_path, "days: 1\nmarket: {design: community, "
                                                     "network: constrained}\n"))
    assert design_options(scenario, "p2p").network == "constrained"


# --- participants named outside the participant list -----------------------------------------

@pytest.mark.parametrize("body, message", [
    # Unknown members were reported on main only with a dso section, and then without a line.
    ("aggregators:\n  - id: agg\n    participants: [LV1.101 Load 1, nobody]\n",
     "scenario.yaml line 6: aggregators[0].participants[1]: unknown participant 'nobody'"),
    ("aggregators:\n  - {id: agg, every: 2, offset: 40}\n",
     "line 5: aggregators[0].offset: offset 40 is beyond the last participant (there are 13)"),
    ("aggregators:\n  - {id: agg}\n", "aggregators[0]: aggregator 'agg' represents nobody"),
    ("aggregators:\n  - {id: agg, participants: [LV1.101 Load 1], offset: 1}\n",
     "aggregators[0]: offset counts from the start of every"),
    ("aggregators:\n  - {id: agg, every: 2}\n  - {id: agg, every: 3}\n",
     "aggregators: aggregator id 'agg' (entry 1) is not unique"),
    ("aggregators:\n  - {id: a1, every: 2}\n  - {id: a2, participants: [LV1.101 Load 1]}\n",
     "line 6: aggregators[1]: participant 'LV1.101 Load 1' is already represented by 'a1'"),
    ("aggregators:\n  - {id: LV1.101 Load 3, every: 2}\n",
     "aggregators[0].id: aggregator id 'LV1.101 Load 3' is a participant's id"),
    ("agents:\n  by_participant: {nobody: zip}\n",
     "line 5: agents.by_participant.nobody: unknown participant 'nobody'"),
    ("dso:\n  flexibility:\n    requests:\n      - {from: '17:00', to: '19:00', direction: up, "
     "kw: 5, buses: [no such bus]}\n",
     "line 7: dso.flexibility.requests[0].buses[0]: unknown bus 'no such bus'"),
    ("dso:\n  flexibility: {lead_time: long-term}\n", "dso.flexibility: a reservation window"),
    ("dso:\n  flexibility: {reservation: {from: '16:00', to: '20:00'}}\n",
     "dso.flexibility: a reservation window (from, to) goes with lead_time long-term"),
])
def test_references_and_ranges_are_scenario_errors(tmp_path, body, message):
    assert message in refused(tmp_path, body)


def test_every_design_has_one_options_model():
    from lemgrid.designs import all_designs
    from lemgrid.scenario.config import DesignOptions

    for design in all_designs():
        assert issubclass(design.Options, DesignOptions), design.name
        parsed = parse_scenario(f"grid: {RURAL}\nmarket: {{design: {design.name}}}\n").market
        assert isinstance(parsed, design.Options) and parsed.design == design.name


def test_an_unknown_design_names_the_designs_there_are(tmp_path):
    message = refused(tmp_path, "market:\n  design: unifrom\n")
    assert "line 5: market.design: Input should be 'none', 'uniform', 'pay-as-bid'" in message


def test_aggregators_that_make_sense_load(tmp_path):
    scenario = load_scenario(scenario_file(tmp_path, """\
        aggregators:
          - {id: a1, every: 3, offset: 1}
          - {id: a2, participants: [LV1.101 Load 1, LV1.101 Load 3]}
        """))
    assert len(scenario.participants) == 13
    assert np.isfinite(scenario.participants.load_p_kw).all()
