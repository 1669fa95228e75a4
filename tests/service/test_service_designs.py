"""Which of a scenario's market designs the server runs: the order-based ones with their own
code, ``none`` (no local market) as sessions that take no orders and settle with the retailer
alone, and the others refused with an error naming the design (never served as an auction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lemgrid
from lemgrid.cli import app as cli
from lemgrid.errors import NotBuiltError
from lemgrid.service import engine
from lemgrid.settlement.bills import Positions, settle

from .conftest import make_world

DEFAULT = Path(lemgrid.__file__).parent / "scenario" / "default.yaml"


def _scenario(tmp_path: Path, design: str) -> Path:
    text = DEFAULT.read_text().replace("days: 7", "days: 1").replace(
        "market: {design: community}", f"market: {{design: {design}}}")
    path = tmp_path / f"{design}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("design", ["uniform", "pay-as-bid", "continuous"])
def test_order_designs_run_with_their_own_mechanism(tmp_path, design):
    assert engine.load_market(str(_scenario(tmp_path, design))).mechanism == design


@pytest.mark.parametrize("design", ["community", "community-constrained", "p2p"])
def test_designs_without_orders_are_refused_naming_the_design(tmp_path, design):
    path = _scenario(tmp_path, design)
    with pytest.raises(NotBuiltError, match=f"market.design: '{design}'"):
        engine.load_market(str(path))
    result = CliRunner().invoke(cli, ["serve", str(path), "--db", f"sqlite:///{tmp_path}/m.db",
                                      "--operator-key", str(tmp_path / "op.key")])
    assert result.exit_code == 2, result.output
    assert design in result.output and "not served" in result.output


def test_design_none_takes_no_orders_and_settles_with_the_retailer(tmp_path):
    spec = engine.load_market(str(_scenario(tmp_path, "none")))
    assert spec.mechanism == "none"
    world = make_world(f"sqlite:///{tmp_path / 'market.db'}", spec)
    alice, bob = sorted(spec.meters)[:2]
    for who in (alice, bob):
        world.join(who, meter=who, sellable_wh=10_000)
    world.session("s1", mechanism="none")
    assert world.operator.get("/sessions/s1").json()["mechanism"] == "none"
    r = world.clients[alice].submit_order("s1", order_id="a1", side="buy", quantity_wh=1000,
                                          price_meur_per_kwh=250, interval=0)
    assert r.status_code == 409 and "design 'none'" in r.json()["detail"], r.text
    # An auction or a sealed-bid session in a market without a local market: refused.
    for path, body in (("/sessions", {"mechanism": "uniform"}),
                       ("/sessions/sealed", {"reveal_ms": world.clock.now_ms + 2_000_000})):
        r = world.operator.request("POST", path, {"market_id": "s2", "interval": 1,
                                                  "gate_ms": world.clock.now_ms + 900_000,
                                                  **body})
        assert r.status_code == 422 and "no local market" in r.json()["detail"], r.text
    world.close("s1")
    assert world.operator.get("/markets/s1/trades").json() == []
    r = world.operator.request("POST", "/markets/s1/metering",
                               {"readings_deadline_ms": world.clock.now_ms + 3_600_000})
    assert r.status_code == 201, r.text
    readings = {alice: (1200, 0), bob: (0, 700)}
    for who, (imp, exp) in readings.items():
        assert world.clients[who].submit_reading("s1", interval=0, import_wh=imp,
                                                 export_wh=exp).status_code == 201
    world.clock.now_ms += 3_600_000
    assert "s1" in world.operator.request("POST", "/admin/tick").json()["settled"]
    # The lab's settlement of design none: every metered kWh with the retailer.
    names = sorted(readings)
    net_kw = np.array([[(readings[n][1] - readings[n][0]) / 1000 / spec.dt_h for n in names]])
    bill = settle(Positions.retail_only(net_kw, spec.dt_h), net_kw, spec.prices, spec.dt_h)
    for i, who in enumerate(names):
        st = world.clients[who].get(f"/markets/s1/delivery-statements/{who}").json()
        assert st["imbalance_ueur"] == 0 and st["market_ueur"] == 0
        assert st["total_ueur"] == round(float(bill.cost_eur[0, i]) * 1e6), who
    assert world.operator.get("/markets/s1/delivery-budget").status_code == 200
    world.http.close()
    world.http.app.state.market.close()
