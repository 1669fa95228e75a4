"""KPIs that summarise the bills (issue 10, item 7) on the example the review named."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lemgrid.scenario import load_scenario
from lemgrid.settlement.bills import Positions, Prices, settle
from lemgrid.settlement.kpis import market_kpis
from lemgrid.sim.runner import simulate


@pytest.fixture(scope="module")
def rural(examples_dir):
    return load_scenario(examples_dir / "lv-rural-community.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("design", ["uniform", "pay-as-bid", "continuous", "p2p"])
def test_participant_shares_and_savings_range_on_the_rural_example(rural, design):
    """On main self_consumption_participant_mean was -0.55 to -0.75 here (energy bought locally
    and fed back was counted as the buyer's own export) and min_savings_eur read 0.0 although
    every participant saved (``min(initial=0)``)."""
    r = simulate(rural, design)
    k, savings = r.kpis, r.bills().savings_eur.to_numpy()
    for name in ("self_consumption_participant_mean", "self_sufficiency_participant_mean"):
        assert 0.0 <= k[name] <= 1.0, (name, k[name])
    assert k["min_savings_eur"] == pytest.approx(savings.min(), abs=1e-9)
    assert k["max_savings_eur"] == pytest.approx(savings.max(), abs=1e-9)


def _bills(savings_eur):
    """Business-as-usual bills of participants importing 1 kWh per interval, and the same bills
    lowered by each participant's saving."""
    net = np.full((4, len(savings_eur)), -1.0)
    bau = settle(Positions.retail_only(net, 1.0), net, Prices(0.25, 0.08, 0.08, 0.02, 0.0, 0.0,
                                                              0.33, 0.08), 1.0)
    energy = bau.retail_energy_eur.copy()
    energy[0] -= savings_eur
    return replace(bau, retail_energy_eur=energy), bau, net


@pytest.mark.parametrize("savings", [[1.0, 2.0, 3.0], [-3.0, -2.0, -1.0]])
def test_min_and_max_savings_are_those_of_the_bills(savings):
    """Everyone saves / everyone loses: main read 0 for the minimum / the maximum."""
    bill, bau, net = _bills(np.array(savings))
    k = market_kpis(bill, bau, net, -net, np.zeros_like(net), np.zeros(len(net)), 1.0)
    assert k["min_savings_eur"] == pytest.approx(min(savings))
    assert k["max_savings_eur"] == pytest.approx(max(savings))
    assert k["min_savings_eur"] <= k["savings_per_participant_eur"] <= k["max_savings_eur"]
