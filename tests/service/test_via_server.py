"""``lemgrid simulate --via-server``: a day of an order-based scenario with every participant an
HTTP client holding its own key, against ``simulate`` in-process: the same trades (to the Wh, the
ledger's unit), the same market bills to the cent, and total bills apart by no more than the Wh
rounding of the traded energy is worth at the tariffs. A day of the community design through the
server's community sessions: the same schedules and bills. Peer-to-peer and network-constrained
designs are refused, saying so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lemgrid
import lemgrid.market
import lemgrid.sim.designs
from lemgrid.cli import app
from lemgrid.errors import NotBuiltError
from lemgrid.scenario import load_scenario
from lemgrid.service import via_server
from lemgrid.sim.runner import simulate

DEFAULT = Path(lemgrid.__file__).parent / "scenario" / "default.yaml"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_day_via_the_server_has_the_trades_and_bills_of_simulate(monkeypatch):
    lab_results, server_results = [], []
    original = lemgrid.market.clear

    def spy(batch, mechanism="uniform", **kw):
        result = original(batch, mechanism, **kw)
        lab_results.append(result)
        return result

    monkeypatch.setattr(lemgrid.market, "clear", spy)
    lab = simulate(load_scenario(DEFAULT, days=1), "uniform")
    monkeypatch.setattr(lemgrid.market, "clear", original)
    routed = via_server.ServerClearing.clear

    def keep(self, orders, mechanism="uniform", **kw):
        result = routed(self, orders, mechanism, **kw)
        server_results.append(result)
        return result

    monkeypatch.setattr(via_server.ServerClearing, "clear", keep)
    served, clearing = via_server.simulate_via_server(load_scenario(DEFAULT, days=1), "uniform")
    assert lemgrid.market.clear is original  # put back after the run

    # every participant traded through its own key
    ids = {str(p) for p in lab_results[0].orders.participant}
    assert set(clearing.agents) == ids and len({c.key_id for c in clearing.agents.values()}) \
        == len(ids)
    assert clearing.n_requests > len(lab_results[0].orders)
    # the same trades: as many, between the same orders, volumes to the Wh
    [a], [b] = lab_results, server_results
    assert len(b.trade_quantity_kwh) == len(a.trade_quantity_kwh) > 50
    assert sorted(zip(b.trade_buy, b.trade_sell)) == sorted(zip(a.trade_buy, a.trade_sell))
    lab_trades = {(int(x), int(y)): (q, p) for x, y, q, p in zip(
        a.trade_buy, a.trade_sell, a.trade_quantity_kwh, a.trade_price_eur_per_kwh)}
    for x, y, q, p in zip(b.trade_buy, b.trade_sell, b.trade_quantity_kwh,
                          b.trade_price_eur_per_kwh):
        q_lab, p_lab = lab_trades[(int(x), int(y))]
        # orders rounded to the Wh (both sides) and the trade down to the Wh: under 2 Wh; the
        # limits rounded to the m€/kWh and the trade price too: at most 1 m€/kWh
        assert abs(q - q_lab) < 0.002 and abs(p - p_lab) <= 0.001 + 1e-9
    # market bills to the cent; total bills within what the Wh rounding is worth
    market_lab = lab.participant_series["market_eur"].sum(axis=0)
    market_srv = served.participant_series["market_eur"].sum(axis=0)
    assert np.abs(market_srv - market_lab).max() < 0.005
    d_energy_kwh = (np.abs(served.local_bought_kwh - lab.local_bought_kwh)
                    + np.abs(served.local_sold_kwh - lab.local_sold_kwh)).sum(axis=0)
    bound = d_energy_kwh * 1.0 + 0.005  # 1 EUR/kWh: above every price of the scenario
    assert np.all(np.abs(served.cost_eur.sum(0) - lab.cost_eur.sum(0)) <= bound)
    assert np.abs(served.cost_eur.sum(0) - lab.cost_eur.sum(0)).max() < 0.01


@pytest.mark.slow
def test_a_community_day_via_the_server_has_the_schedules_and_bills_of_simulate():
    """The default scenario (community design) for a day: every member bids through its own key,
    the server's manager clears with the lab's code on the exact numbers signed, and the
    simulation settles the positions the server published: the same schedules and bills as
    in-process, to the cent (reals cross the wire as decimal strings, so exactly)."""
    lab = simulate(load_scenario(DEFAULT, days=1), "community")
    served, clearing = via_server.simulate_via_server(load_scenario(DEFAULT, days=1),
                                                      "community")
    ids = {str(p) for p in lab.participant_ids}
    assert set(clearing.agents) == ids and len({c.key_id for c in clearing.agents.values()}) \
        == len(ids) == 13
    assert clearing.calls == 1  # one community session for the day
    assert np.array_equal(served.participant_series["scheduled_kw"],
                          lab.participant_series["scheduled_kw"])
    assert np.abs(served.cost_eur.sum(0) - lab.cost_eur.sum(0)).max() < 0.005
    for column in ("market_eur", "sharing_eur", "battery_e_kwh"):
        assert np.allclose(served.participant_series[column], lab.participant_series[column],
                           atol=1e-9, rtol=0)
    assert lab.participant_series["market_eur"].any()  # the community traded
    assert lemgrid.sim.designs.clear_community.__module__ == "lemgrid.sim.designs"  # put back


def test_designs_the_server_does_not_clear_are_refused_naming_them():
    scenario = load_scenario(ROOT / "examples" / "lv-rural-community.yaml", days=1)
    with pytest.raises(NotBuiltError, match="design 'p2p' is not cleared by the market "
                                            "server"):
        via_server.simulate_via_server(scenario, "p2p")
    r = CliRunner().invoke(app, ["simulate", str(ROOT / "examples" / "lv-rural-community.yaml"),
                                 "--days", "1", "--design", "community-constrained",
                                 "--via-server", "--quiet"])
    assert r.exit_code == 2 and "order-based designs uniform" in r.output, r.output
    r = CliRunner().invoke(app, ["simulate", "--days", "1", "--server", "http://x"])
    assert r.exit_code == 2 and "only with --via-server" in r.output


@pytest.fixture
def served_clearing(tmp_path):
    """The HTTP path of ``--via-server URL``: a served app (uvicorn on loopback) and an httpx
    client; the lab's clearings are routed through the yielded
    :class:`via_server.ServerClearing` while the test runs (``lab_clearing()`` for the lab's)."""
    import httpx

    from lemgrid.ledger.identity import generate_key
    from lemgrid.service.app import create_app

    from ._live import ThreadServer

    clock = via_server.SimulatedClock()
    key = generate_key()
    served = ThreadServer(create_app(f"sqlite:///{tmp_path / 'm.db'}", key, clock_ms=clock))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            clearing = via_server.ServerClearing(http, key, clock)
            with via_server.clearing_through(clearing):
                yield clearing
    finally:
        served.stop()


@pytest.mark.parametrize("mechanism", ["uniform", "pay-as-bid", "continuous"])
def test_a_batch_cleared_over_http_equals_the_labs_clearing(mechanism, served_clearing):
    """An httpx client per agent; orders already in whole Wh and m€/kWh, so the results must
    be equal."""
    from lemgrid.market import OrderBatch

    rng = np.random.default_rng(7)
    n = 40
    batch = OrderBatch.from_arrays(
        order_id=np.arange(n), participant=np.array([f"p{i % 9}" for i in range(n)]),
        side=np.where(rng.random(n) < 0.5, "buy", "sell"),
        quantity_kwh=rng.integers(100, 3000, n) / 1000,
        price_eur_per_kwh=rng.integers(50, 300, n) / 1000, interval=rng.integers(0, 3, n),
        timestamp_s=rng.permutation(n).astype(float), source="test orders")
    with served_clearing.lab_clearing():
        lab = lemgrid.market.clear(batch, mechanism)
    result = lemgrid.market.clear(batch, mechanism)
    assert len(result.trade_quantity_kwh) == len(lab.trade_quantity_kwh) > 3
    assert np.array_equal(result.trade_buy, lab.trade_buy)
    assert np.array_equal(result.trade_sell, lab.trade_sell)
    assert np.allclose(result.trade_quantity_kwh, lab.trade_quantity_kwh, atol=1e-3)
    assert np.allclose(result.trade_price_eur_per_kwh, lab.trade_price_eur_per_kwh, atol=5e-4)
    # each participant's money in each session is its statement: the lab's to the µ€
    for who in set(batch.participant):
        for t in range(3):
            mine = (batch.participant == who) & (batch.interval == t)
            assert abs(result.cash_flow_eur[mine].sum() - lab.cash_flow_eur[mine].sum()) < 1e-6
    assert np.abs(result.cash_flow_eur - lab.cash_flow_eur).max() < 1e-6
    assert np.allclose(result.filled_kwh, lab.filled_kwh, atol=2e-3)


def test_a_community_cleared_over_http_equals_the_labs_clearing(served_clearing):
    """A community over HTTP: an httpx client per member; a day of four members with a
    battery and PV."""
    from lemgrid.assets.tables import Batteries
    from lemgrid.settlement.bills import Prices
    from lemgrid.sim.designs import community_problem_of

    rng = np.random.default_rng(11)
    n_t = 96
    hours = np.arange(n_t) / 4
    pv = np.outer(np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None), [0.0, 6.0, 0.0, 3.0])
    load = rng.uniform(0.2, 1.5, (n_t, 4))
    battery = Batteries(owner=np.array([2]), name=np.array(["b"]), capacity_kwh=np.array([8.0]),
                        power_kw=np.array([3.0]), eta_charge=np.array([0.95]),
                        eta_discharge=np.array([0.95]), soc_min=np.array([0.1]),
                        soc_max=np.array([1.0]), soc_initial=np.array([0.5]),
                        soc_final=np.array([0.5]))
    prices = Prices(0.22, 0.08, 0.06, 0.02, 0.01, 0.0, 0.30, 0.06)
    problem, reference = community_problem_of(
        np.array(["a", "b", "c", "d"]), np.array([1, 2, 3, 4]), load, pv,
        {"battery": battery}, prices, 0.25, 0.06, 0.001)
    with served_clearing.lab_clearing():
        lab, lab_positions = lemgrid.sim.designs.clear_community(problem, reference, prices)
    result, positions = lemgrid.sim.designs.clear_community(problem, reference, prices)
    assert served_clearing.calls == 1 and len(served_clearing.agents) == 4
    assert np.array_equal(result.schedule_kw, lab.schedule_kw)
    assert np.array_equal(result.kinds["battery"].state, lab.kinds["battery"].state)
    assert np.array_equal(positions.market_paid_eur, lab_positions.market_paid_eur)
    assert np.array_equal(positions.sharing_eur, lab_positions.sharing_eur)
    assert lab_positions.local_bought_kwh.sum() > 1.0  # the members traded
