"""The dashboard's server side without a browser: feeder layouts, book depth, what the public
view and feed show (nobody's name), who may read the signed views."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from lemgrid.grid.sources import load_grid, load_pandapower_net
from lemgrid.service.dashboard.layout import branch_buses, computed_layout, feeder_layout
from lemgrid.service.dashboard.views import depth, public_event

from .conftest import make_world


@pytest.fixture(scope="module")
def ieee33():
    return load_grid("ieee33").network, load_pandapower_net("ieee33")


def test_computed_layout_puts_each_bus_at_its_hop_count_from_the_slack(ieee33):
    network, _ = ieee33
    xy = computed_layout(network)
    f, t = branch_buses(network)
    graph = nx.Graph(list(zip(f.tolist(), t.tolist())))  # networkx as the outside reference
    hops = nx.single_source_shortest_path_length(graph, int(network.slack_bus))
    assert xy[:, 0].tolist() == [float(hops[b]) for b in range(network.n_bus)]
    assert len({tuple(p) for p in xy}) == network.n_bus  # no two buses drawn on each other
    for a, b in zip(f, t):
        assert abs(xy[a, 0] - xy[b, 0]) == 1  # radial: every branch spans one layer


def test_feeder_layout_prefers_the_grids_geodata(ieee33):
    network, net = ieee33
    xy, source = feeder_layout(network, net)
    assert source == "geodata"
    coords = [json.loads(g)["coordinates"] for g in net.bus["geo"]] if "geo" in net.bus else \
        net.bus_geodata[["x", "y"]].to_numpy().tolist()
    assert np.allclose(xy, coords)
    assert feeder_layout(network, None)[1] == "computed"


def test_depth_sums_open_quantity_by_price_level():
    rows = [{"side": "buy", "quantity_wh": 1000, "filled_wh": 0, "price_meur_per_kwh": 200},
            {"side": "buy", "quantity_wh": 500, "filled_wh": 100, "price_meur_per_kwh": 200},
            {"side": "buy", "quantity_wh": 700, "filled_wh": 0, "price_meur_per_kwh": 250},
            {"side": "sell", "quantity_wh": 300, "filled_wh": 0, "price_meur_per_kwh": 90},
            {"side": "sell", "quantity_wh": 400, "filled_wh": 0, "price_meur_per_kwh": 80}]
    d = depth(rows)
    assert d["bids"] == [
        {"price_meur_per_kwh": 250, "quantity_wh": 700, "cumulative_wh": 700, "n_orders": 1},
        {"price_meur_per_kwh": 200, "quantity_wh": 1400, "cumulative_wh": 2100, "n_orders": 2}]
    assert [(a["price_meur_per_kwh"], a["cumulative_wh"]) for a in d["asks"]] == [(80, 400),
                                                                                   (90, 700)]


def test_public_events_carry_no_ids():
    assert public_event({"event": "order", "market_id": "m", "order_id": "alice-1",
                         "side": "buy", "quantity_wh": 5, "price_meur_per_kwh": 1}) == {
        "event": "order", "market_id": "m", "side": "buy", "quantity_wh": 5,
        "price_meur_per_kwh": 1}
    assert "offer_id" not in public_event({"event": "flex-offer", "offer_id": "bob-f",
                                           "interval": 3, "direction": "up"})
    assert public_event({"event": "something-new", "participant": "alice"}) is None


@pytest.fixture
def traded(tmp_path):
    w = make_world(f"sqlite:///{tmp_path / 'market.db'}")
    alice, bob = w.join("alice-the-seller"), w.join("bob-the-buyer")
    w.session("m1")
    assert alice.submit_order("m1", order_id="ord-alice", side="sell", quantity_wh=2000,
                              price_meur_per_kwh=100, interval=0).status_code == 201
    assert bob.submit_order("m1", order_id="ord-bob", side="buy", quantity_wh=1500,
                            price_meur_per_kwh=200, interval=0).status_code == 201
    w.session("m2", gate_in_ms=1_800_000)
    assert bob.submit_order("m2", order_id="ord-bob-2", side="buy", quantity_wh=700,
                            price_meur_per_kwh=150, interval=0).status_code == 201
    w.close("m1")
    yield w
    w.http.close()
    w.http.app.state.market.close()


def test_the_public_view_names_nobody(traded):
    r = traded.http.get("/dashboard/api/public")
    assert r.status_code == 200
    text = r.text
    for secret in ("alice", "bob", "ord-"):
        assert secret not in text
    view = r.json()
    [trade] = traded.operator.get("/markets/m1/trades").json()
    price = trade["price_meur_per_kwh"]
    assert [(x["quantity_wh"], x["price_meur_per_kwh"]) for x in view["trades"]] == [(1500, price)]
    assert view["depth"]["m2"]["bids"][0]["quantity_wh"] == 700
    assert view["local_price"] == [{"interval": 0, "price_meur_per_kwh": price,
                                    "volume_wh": 1500}]
    page = traded.http.get("/")
    assert page.status_code == 200 and "alice" not in page.text and 'id="interval-slider"' \
        not in page.text  # no dso block: no feeder
    assert traded.http.get("/dashboard/api/grid").status_code == 404


def test_signed_views_show_only_ones_own(traded):
    alice = traded.clients["alice-the-seller"]
    assert traded.http.get("/dashboard/api/me").status_code == 401
    mine = alice.get("/dashboard/api/me").json()
    assert [o["order_id"] for o in mine["orders"]] == ["ord-alice"]
    assert [s["participant"] for s in mine["statements"]] == ["alice-the-seller"]
    [trade] = traded.operator.get("/markets/m1/trades").json()
    assert mine["total_ueur"] == 1500 * trade["price_meur_per_kwh"]  # 1.5 kWh x m€/kWh = µ€
    assert mine["schedule"][0]["sold_wh"] == 1500
    assert mine["orders"][0]["seq"] >= 0
    assert alice.get("/dashboard/api/operator").status_code == 403
    assert traded.operator.get("/dashboard/api/me").status_code == 403
    staff = traded.operator.get("/dashboard/api/operator").json()
    assert {s["market_id"]: s["sum_amount_ueur"] for s in staff["sessions"]} == {"m1": 0,
                                                                                 "m2": 0}
    assert {i["participant"] for i in staff["identities"]} >= {"alice-the-seller",
                                                               "bob-the-buyer"}


def test_the_dashboards_assets_are_served_by_the_package(traded):
    js = traded.http.get("/dashboard/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert traded.http.get("/dashboard/static/dashboard.js").status_code == 200
    assert traded.http.get("/dashboard/static/dashboard.css").status_code == 200
    assert traded.http.get("/dashboard/static/..%2Fviews.py").status_code == 404
    assert traded.http.get("/dashboard/static/missing.js").status_code == 404
