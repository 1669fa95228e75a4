"""``lemgrid agent``: one participant's agent, with its forecast from a file, trades on a live
server (uvicorn on loopback, wall clock)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, write_private_key
from lemgrid.service.app import create_app

from ._live import ThreadServer


@pytest.fixture
def server(tmp_path):
    key = generate_key()
    served = ThreadServer(create_app(f"sqlite:///{tmp_path / 'market.db'}", key))
    operator = MarketClient(served.url, key)
    operator.participant = "operator"
    yield served, operator
    served.stop()


def _join(served, operator, name: str, key_path) -> MarketClient:
    key = generate_key()
    write_private_key(key, key_path)
    client = MarketClient(served.url, key)
    assert client.register(name, f"meter-{name}").status_code == 201
    assert operator.request("POST", f"/identities/{name}/approve").status_code == 200
    return client


def test_the_agent_bids_its_forecast_in_the_open_sessions(server, tmp_path):
    served, operator = server
    home = _join(served, operator, "home-1", tmp_path / "home.key")
    assert operator.request("POST", "/capabilities", {
        "participant": "home-1", "interval": 40, "sellable_wh": 5000}).status_code == 201
    gate_ms = time.time_ns() // 1_000_000 + 600_000
    for market_id, interval in (("m40", 40), ("m41", 41), ("m42", 42)):
        assert operator.request("POST", "/sessions", {
            "market_id": market_id, "interval": interval, "gate_ms": gate_ms}).status_code == 201
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("interval,net_kwh\n40,1.25\n41,-0.4\n")  # nothing for interval 42
    r = CliRunner().invoke(app, ["agent", "--server", served.url, "--key",
                                 str(tmp_path / "home.key"), "--forecast", str(forecast),
                                 "--strategy", "price-taker", "--buy-limit", "0.31",
                                 "--sell-limit", "0.07", "--once"])
    assert r.exit_code == 0, r.output
    assert "2 orders submitted, 0 refused" in r.output
    sell = home.get("/markets/m40/orders/home-1-m40").json()
    buy = home.get("/markets/m41/orders/home-1-m41").json()
    assert (sell["side"], sell["quantity_wh"], sell["price_meur_per_kwh"]) == ("sell", 1250, 70)
    assert (buy["side"], buy["quantity_wh"], buy["price_meur_per_kwh"]) == ("buy", 400, 310)
    public = operator.get("/dashboard/api/public").json()
    assert public["open_orders"] == {"m40": 1, "m41": 1}


def test_zi_c_limits_stay_between_the_feed_in_tariff_and_the_retail_price(server, tmp_path):
    from lemgrid.service.home_agent import Forecast, HomeAgent

    served, operator = server
    home = _join(served, operator, "home-2", tmp_path / "home.key")
    agent = HomeAgent(home, Forecast(*[[0], [1.0]]), "zi-c", 0.30, 0.10, seed=3)
    draws = [agent.limit_eur_per_kwh("buy") for _ in range(200)]
    assert 0.10 <= min(draws) < 0.12 and 0.28 < max(draws) <= 0.30


@pytest.mark.parametrize("text, message", [
    ("interval,net\n1,2\n", "missing column(s) net_kwh"),
    ("interval,net_kwh\n1,2\nx,3\n", "row 3: interval must be an integer"),
    ("interval,net_kwh\n1,nan\n", "row 2: net_kwh must be a finite number"),
    ("interval,net_kwh\n1,2\n1,3\n", "row 3: interval 1 appears twice"),
])
def test_a_bad_forecast_is_refused_naming_row_and_column(server, tmp_path, text, message):
    served, operator = server
    _join(served, operator, "home-3", tmp_path / "home.key")
    forecast = tmp_path / "forecast.csv"
    forecast.write_text(text)
    r = CliRunner().invoke(app, ["agent", "--server", served.url, "--key",
                                 str(tmp_path / "home.key"), "--forecast", str(forecast),
                                 "--once"])
    assert r.exit_code == 2 and message in r.output, r.output


def test_an_unknown_strategy_or_zip_is_refused(server, tmp_path):
    served, operator = server
    _join(served, operator, "home-4", tmp_path / "home.key")
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("interval,net_kwh\n1,2\n")
    base = ["agent", "--server", served.url, "--key", str(tmp_path / "home.key"),
            "--forecast", str(forecast), "--once"]
    r = CliRunner().invoke(app, [*base, "--strategy", "greedy"])
    assert r.exit_code == 2 and "--strategy: must be one of price-taker, zi-c" in r.output
    r = CliRunner().invoke(app, [*base, "--strategy", "zip"])
    assert r.exit_code == 2 and "not built" in r.output
