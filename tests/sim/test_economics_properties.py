"""Economics that must hold for every design on any small feeder (issue 10, items 7 and 8).

Random small feeders (2-5 households on a SimBench LV grid with random load, PV, batteries, EVs,
tariffs and charges, bidding strategies that keep to the owners' rules), every design:

- under perfect forecasts no participant pays more than under business-as-usual (individual
  rationality), and the books balance;
- whatever the forecasts, the KPIs summarise the bills: shares within [0, 1], min <= mean <= max
  savings, each equal to what the bills give.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.sim.runner import simulate

DESIGNS = ("uniform", "pay-as-bid", "continuous", "community", "p2p")
BUSES = [f"LV1.101 Bus {k}" for k in range(1, 15)]
SHARES = ("share_better_off", "share_worse_off", "self_sufficiency", "self_consumption",
          "self_sufficiency_participant_mean", "self_consumption_participant_mean")


@st.composite
def feeders(draw, forecast=st.sampled_from(["perfect", "noisy"])):
    n = draw(st.integers(2, 5))
    buses = draw(st.lists(st.sampled_from(BUSES), min_size=n, max_size=n, unique=True))
    participants = []
    for k, bus in enumerate(buses):
        assets = []
        if draw(st.booleans()):
            assets.append({"type": "battery", "capacity_kwh": draw(st.sampled_from([4, 8, 12])),
                           "power_kw": draw(st.sampled_from([2, 4])),
                           "efficiency": draw(st.sampled_from([0.8, 0.9, 0.96])),
                           "soc_initial": draw(st.sampled_from([0.0, 0.5, 1.0]))})
        if draw(st.booleans()):
            assets.append({"type": "ev", "power_kw": draw(st.sampled_from([3.7, 11])),
                           "energy_kwh": draw(st.sampled_from([4, 9])),
                           "arrival": draw(st.sampled_from(["17:00", "19:00"])),
                           "departure": "07:00"})
        participants.append({
            "id": f"p{k}", "bus": bus,
            "load": {"profile": draw(st.sampled_from(["H0-A", "H0-C", "G0-A"])),
                     "annual_kwh": draw(st.integers(1500, 6000))},
            "pv_kwp": draw(st.sampled_from([0, 0, 4, 10])), "assets": assets})
    retail_energy = draw(st.sampled_from([0.15, 0.25]))
    config = {
        "grid": "simbench:1-LV-rural1--0-sw",
        "start": draw(st.sampled_from(["2016-06-06", "2016-03-15", "2016-12-01"])),
        "days": draw(st.integers(1, 2)), "resolution": "60min",
        "participants": participants,
        "tariffs": {"import_eur_per_kwh": retail_energy,
                    "network_eur_per_kwh": draw(st.sampled_from([0.05, 0.08])),
                    "export_eur_per_kwh": draw(st.sampled_from([0.0, 0.06, 0.1]))},
        "settlement": {"local_network_eur_per_kwh": draw(st.sampled_from([0.0, 0.02, 0.04])),
                       "levies_eur_per_kwh": draw(st.sampled_from([0.0, 0.03])),
                       "fixed_eur_per_day": draw(st.sampled_from([0.0, 0.4]))},
        "agents": {"default": draw(st.sampled_from(["price-taker", "zi-c", "zip"]))},
        "forecast": {"method": draw(forecast), "error": 0.15},
        "seed": draw(st.integers(0, 100)),
        # Rural grid, no network limits in play for these designs.
        "market": {"design": "uniform"},
    }
    return build_scenario(parse_scenario(yaml.safe_dump(config, sort_keys=False)))


PROPERTY = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.slow
@PROPERTY
@given(feeders(forecast=st.just("perfect")))
def test_every_design_is_individually_rational(scenario):
    """Perfect forecasts: nobody pays more than under business-as-usual (to 1e-6 EUR over the
    horizon), and what participants pay is what the retailer, the DSO and the state receive."""
    for design in DESIGNS:
        r = simulate(scenario, design)
        savings = r.bau_cost_eur.sum(axis=0) - r.cost_eur.sum(axis=0)
        assert savings.min() >= -1e-6, (design, dict(zip(r.participant_ids, savings.round(6))))
        assert abs(r.kpis["budget_gap_eur"]) < 1e-6, design


@pytest.mark.slow
@PROPERTY
@given(feeders())
def test_kpis_summarise_the_bills(scenario):
    """Shares within [0, 1]; min <= mean <= max savings; totals and counts equal to bills.csv."""
    for design in DESIGNS:
        r = simulate(scenario, design)
        k, bills = r.kpis, r.bills()
        for name in SHARES:
            assert k[name] is None or 0.0 <= k[name] <= 1.0, (design, name, k[name])
        savings = bills.savings_eur.to_numpy()
        assert k["min_savings_eur"] <= k["savings_per_participant_eur"] <= k["max_savings_eur"]
        assert k["min_savings_eur"] == pytest.approx(savings.min(), abs=1e-9)
        assert k["max_savings_eur"] == pytest.approx(savings.max(), abs=1e-9)
        assert k["savings_per_participant_eur"] == pytest.approx(savings.mean(), abs=1e-9)
        assert k["total_savings_eur"] == pytest.approx(savings.sum(), abs=1e-9)
        assert k["total_cost_eur"] == pytest.approx(bills.cost_eur.sum(), abs=1e-9)
        assert k["share_better_off"] == pytest.approx(np.mean(savings > 0.005))
        assert k["share_worse_off"] == pytest.approx(np.mean(savings < -0.005))
        # A participant's own import / export beyond its local trades: at most what it drew /
        # fed in at its meter.
        metered = r.metered_kw * r.dt_h
        assert np.all(bills.import_kwh.to_numpy() <= np.maximum(-metered, 0).sum(axis=0) + 1e-9)
        assert np.all(bills.export_kwh.to_numpy() <= np.maximum(metered, 0).sum(axis=0) + 1e-9)
