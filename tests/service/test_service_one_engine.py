"""One engine: a day of the default scenario through the server (every participant an HTTP
client signing its orders, one session per interval on a simulated clock) gives the trades and
market bills of `lemgrid simulate` in-process, to the cent, for three designs.

The agents' orders are taken from the simulation itself (a spy on the lab's ``clear``), so both
drivers clear the same bids; the server receives them in the ledger's integer units (Wh, m€/kWh),
the only difference allowed, which is why bills must agree to the cent and volumes to the Wh per
order.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import lemgrid.market
from lemgrid.scenario import load_scenario
from lemgrid.sim.runner import simulate

from .conftest import make_world

DEFAULT = Path(lemgrid.__file__).parent / "scenario" / "default.yaml"
INTERVAL_MS = 900_000


def _simulate_spied(design: str, monkeypatch) -> list:
    calls = []
    original = lemgrid.market.clear

    def spy(batch, mechanism="uniform", **kw):
        result = original(batch, mechanism, **kw)
        calls.append((batch, mechanism, result))
        return result

    monkeypatch.setattr(lemgrid.market, "clear", spy)
    simulate(load_scenario(DEFAULT, days=1, market={"design": design}))
    monkeypatch.setattr(lemgrid.market, "clear", original)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("design", ["uniform", "pay-as-bid", "continuous"])
def test_a_day_through_the_server_equals_lemgrid_simulate(design, tmp_path, monkeypatch):
    calls = _simulate_spied(design, monkeypatch)
    assert len(calls) == 1  # the day-ahead session (no intraday in this scenario)
    batch, mechanism, lab = calls[0]
    assert mechanism == design
    world = make_world(f"sqlite:///{tmp_path / 'market.db'}")
    ids = sorted(set(batch.participant.tolist()))
    sell_wh: dict[tuple, int] = defaultdict(int)
    for who, side, q, t in zip(batch.participant, batch.side, batch.quantity_kwh,
                               batch.interval):
        if side == lemgrid.market.SELL:
            sell_wh[(who, int(t))] += round(q * 1000)
    clients = {}
    for who in ids:
        clients[who] = world.join(who, meter=who, sellable_wh=None)
    for (who, t), wh in sorted(sell_wh.items()):  # the meters' forecast sellable energy
        assert world.operator.request("POST", "/capabilities", {
            "participant": who, "interval": t, "sellable_wh": wh,
            "source": "forecast"}).status_code == 201
    intervals = sorted(set(batch.interval.tolist()))
    t0 = world.clock.now_ms
    for t in intervals:
        assert world.operator.request("POST", "/sessions", {
            "market_id": f"d-{t}", "interval": t, "gate_ms": t0 + (t + 1) * INTERVAL_MS,
            "mechanism": design}).status_code == 201
    order = np.lexsort((batch.timestamp_s, batch.interval))  # arrival order within a session
    by_interval = defaultdict(list)
    for i in order:
        by_interval[int(batch.interval[i])].append(int(i))
    for t in intervals:
        for i in by_interval[t]:
            who = batch.participant[i]
            r = clients[who].submit_order(
                f"d-{t}", order_id=f"o{i}", interval=t,
                side="buy" if batch.side[i] == lemgrid.market.BUY else "sell",
                quantity_wh=round(batch.quantity_kwh[i] * 1000),
                price_meur_per_kwh=round(batch.price_eur_per_kwh[i] * 1000))
            assert r.status_code == 201, r.text
        world.clock.now_ms = t0 + (t + 1) * INTERVAL_MS
        assert world.operator.request("POST", "/admin/tick").json()["settled"] == [f"d-{t}"]

    lab_bill = defaultdict(float)
    for who, cash in zip(batch.participant, lab.cash_flow_eur):
        lab_bill[who] += cash
    lab_volume = defaultdict(float)
    for t, v in zip(lab.market_interval, lab.volume_kwh):
        lab_volume[int(t)] += v
    n_orders = np.bincount(batch.interval)
    server_trades = 0
    for t in intervals:
        trades = world.operator.get(f"/markets/d-{t}/trades").json()
        server_trades += len(trades)
        volume_wh = sum(x["quantity_wh"] for x in trades)
        assert abs(volume_wh - lab_volume[t] * 1000) <= n_orders[t] + 1, t
        assert world.operator.get(f"/markets/d-{t}/budget").json()["balanced"]
    assert server_trades == len(lab.trade_quantity_kwh) > 0
    worst = 0.0
    for who in ids:
        billed_ueur = sum(world.operator.get(f"/markets/d-{t}/statements/{who}").json()
                          ["amount_ueur"] for t in intervals)
        worst = max(worst, abs(billed_ueur / 1e6 - lab_bill[who]))
    assert worst < 0.005, f"largest difference {worst:.4f} EUR"
    world.http.close()
