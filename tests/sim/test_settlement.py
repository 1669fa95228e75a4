"""Settlement identities: budget balance for every design, and business-as-usual bills against a
hand computation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.settlement.bills import Positions, Prices, settle
from lemgrid.sim.runner import simulate

DESIGNS = ["none", "uniform", "pay-as-bid", "continuous", "community", "community-constrained",
           "p2p"]
SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 2
scale: {pv: 3.0}
assets:
  - {type: battery, every: 3, capacity_kwh: 10, power_kw: 5}
  - {type: ev, every: 4, power_kw: 11, energy_kwh: 9}
forecast: {method: noisy, error: 0.15}
agents: {default: zip, by_participant: {"LV1.101 Load 2": optimizer, "LV1.101 Load 3": zi-c}}
settlement: {local_network_eur_per_kwh: 0.03, levies_eur_per_kwh: 0.02, fixed_eur_per_day: 0.3}
"""


@pytest.fixture(scope="module")
def scenario():
    return build_scenario(parse_scenario(SCENARIO))


@pytest.mark.parametrize("design", DESIGNS)
def test_budget_balance_to_the_cent(scenario, design):
    """What all participants pay equals what the retailer (imports minus exports, imbalance),
    the DSO (network charges, fixed fees) and the state (levies) receive."""
    r = simulate(scenario, design)
    paid = r.cost_eur.sum()
    received = r.kpis["retailer_eur"] + r.kpis["dso_eur"] + r.kpis["state_eur"]
    assert abs(paid - received) < 0.005
    assert abs(r.kpis["budget_gap_eur"]) < 0.005
    # Independently: the retailer gets import price x energy imported minus the feed-in tariff x
    # energy exported, counted on the metered community position when nobody trades locally.
    if design == "none":
        t = scenario.tariffs
        s = scenario.config.settlement
        net_kwh = r.metered_kw * r.dt_h
        imported, exported = np.clip(-net_kwh, 0, None), np.clip(net_kwh, 0, None)
        days = len(r.time_index) * r.dt_h / 24
        expected = (imported.sum() * (t.import_eur_per_kwh + t.network_eur_per_kwh
                                      + s.levies_eur_per_kwh)
                    - exported.sum() * t.export_eur_per_kwh
                    + s.fixed_eur_per_day * days * len(r.participant_ids))
        assert paid == pytest.approx(expected, abs=0.005)


def test_business_as_usual_bills_by_hand():
    """Two households, no battery: every kWh short is bought at retail plus levies, every kWh
    long sold at the feed-in tariff; a fixed fee per day."""
    scenario = build_scenario(parse_scenario("""
grid: simbench:1-LV-rural1--0-sw
start: 2016-07-01
days: 1
resolution: 60min
participants:
  - {id: sun, bus: "LV1.101 Bus 2", pv_kwp: 6, load: {profile: H0-A, annual_kwh: 2500}}
  - {id: moon, bus: "LV1.101 Bus 4", load: {profile: H0-B, annual_kwh: 4000}}
tariffs: {import_eur_per_kwh: 0.20, network_eur_per_kwh: 0.10, export_eur_per_kwh: 0.07}
settlement: {levies_eur_per_kwh: 0.05, fixed_eur_per_day: 0.40}
market: {design: none}
"""))
    r = simulate(scenario)
    parts = scenario.participants
    for n, pid in enumerate(parts.ids):
        cost = 0.0
        for t in range(24):  # 60-minute intervals: kWh = kW
            net = parts.pv_p_kw[t, n] - parts.load_p_kw[t, n]
            cost += (0.20 + 0.10 + 0.05) * max(-net, 0.0) - 0.07 * max(net, 0.0)
        cost += 0.40
        bill = r.bills().set_index("participant").loc[pid]
        assert bill.cost_eur == pytest.approx(cost, abs=1e-9)
        assert bill.bau_cost_eur == pytest.approx(cost, abs=1e-9)
        assert bill.savings_eur == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 10_000))
def test_settlement_balances_for_any_positions(n_t, n, seed):
    """Random but consistent positions and meters: the budget always balances."""
    rng = np.random.default_rng(seed)
    dt = 0.25
    bought, sold = rng.uniform(0, 2, (2, n_t, n))
    retail_import, retail_export = rng.uniform(0, 2, (2, n_t, n))
    scheduled = (sold - bought + retail_export - retail_import) / dt
    transfers = rng.normal(0, 1, (n_t, n))  # benefit sharing: a zero-sum transfer per interval
    positions = Positions(
        scheduled_kw=scheduled, market_bought_kwh=bought, market_sold_kwh=sold,
        local_bought_kwh=bought * rng.uniform(0, 1, (n_t, n)),
        local_sold_kwh=sold * rng.uniform(0, 1, (n_t, n)),
        market_paid_eur=rng.normal(0, 1, (n_t, n)), retail_import_kwh=retail_import,
        retail_export_kwh=retail_export, price_eur_per_kwh=np.full(n_t, 0.2),
        sharing_eur=transfers - transfers.mean(axis=1, keepdims=True))
    prices = Prices(0.2, 0.08, 0.07, 0.02, 0.05, 0.5, 0.35, 0.04)
    bill = settle(positions, scheduled + rng.normal(0, 1, (n_t, n)), prices, dt)
    assert abs(bill.budget_gap_eur) < 1e-9


@pytest.mark.parametrize("design", ["uniform", "community", "p2p"])
def test_budget_balance_with_dso_tso_and_aggregators(design):
    """Flexibility money (DSO and TSO buyers, aggregator fees, penalties for non-delivery) keeps
    the books balanced."""
    scenario = build_scenario(parse_scenario(f"""
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
scale: {{pv: 6.0}}
assets:
  - {{type: battery, every: 2, capacity_kwh: 10, power_kw: 5}}
market: {{design: {design}}}
aggregators:
  - {{id: agg, every: 2, fee_share: 0.25}}
dso:
  flexibility: {{delivery_rate: 0.8, pricing: pay-as-clear,
                prices: {{availability_eur_per_kw_h: 0.01}}}}
  coordination: {{scheme: local-first, tso_requests:
                 [{{from: "17:00", to: "19:00", direction: up, kw: 8}}]}}
"""))
    r = simulate(scenario, design)
    k = r.kpis
    assert k["flex_cost_eur"] > 0 and k["aggregator_eur"] > 0 and k["tso_eur"] != 0
    received = (k["retailer_eur"] + k["dso_eur"] + k["state_eur"] + k["tso_eur"]
                + k["aggregator_eur"])
    assert abs(r.cost_eur.sum() - received) < 0.005
    acts = r.tables["flex_activations"]
    assert {"DSO", "TSO"} <= set(acts.buyer)
    assert (~acts.delivered).any() and acts.loc[~acts.delivered, "penalty_eur"].gt(0).all()
