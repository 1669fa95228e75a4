"""UMEI's units, periods, problem details and tokens, without a grid (fast)."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pandas as pd
import pytest

from lemgrid.service.umei import models as m
from lemgrid.service.umei.auth import TOKEN_TTL_MS
from lemgrid.service.umei.problems import TYPE_BASE, Problem
from lemgrid.service.umei.units import Calendar, meur_per_kwh, quantity_mw, watts

from ._umei import fsp_client_module

UTC = dt.timezone.utc


@pytest.mark.parametrize("power_w", [0, 1, 499, 500, 1234, 11_000, -2_700, 123_456,
                                     -999_499, 65_532_000, -999_999_499])
def test_quantities_are_whole_kw(power_w):
    q = quantity_mw(power_w)
    assert abs(Fraction(q) - Fraction(round(power_w / 1000), 1000)) < Fraction(1, 10**12)


def test_every_kw_up_to_1_mw_passes_a_float_multiple_of_check():
    for n_kw in range(-1000, 1001):
        q = quantity_mw(n_kw * 1000)
        assert q / 0.001 == int(q / 0.001) == n_kw, n_kw  # what a naive multipleOf computes


def test_watts_and_prices_refuse_what_lemgrid_cannot_hold():
    assert watts(0.002345, "quantity") == 2345
    with pytest.raises(Problem) as info:
        watts(0.0000015, "pricePoints[0].quantity")
    assert info.value.errors[0].property == "pricePoints[0].quantity"
    assert meur_per_kwh(30.0, "unitPrice") == 30
    with pytest.raises(Problem) as info:
        meur_per_kwh(30.25, "pricePoints[0].unitPrice")
    assert info.value.code == "InvalidOrder" and "1 EUR/MWh" in info.value.detail


def test_periods_are_intervals_in_utc():
    """SimBench's Europe/Berlin day 2016-01-19 (CET, UTC+1) starts at 23:00 UTC the day
    before; a summer day (CEST, UTC+2) at 22:00."""
    winter = Calendar(list(pd.date_range("2016-01-19", periods=96, freq="15min",
                                         tz="Europe/Berlin").to_pydatetime()), 0.25)
    assert winter.period(0) == (dt.datetime(2016, 1, 18, 23, tzinfo=UTC),
                                dt.datetime(2016, 1, 18, 23, 15, tzinfo=UTC))
    assert winter.interval(dt.datetime(2016, 1, 19, 16, tzinfo=UTC),
                           dt.datetime(2016, 1, 19, 16, 15, tzinfo=UTC)) == 68  # 17:00 CET
    summer = Calendar(list(pd.date_range("2016-06-01", periods=4, freq="15min",
                                         tz="Europe/Berlin").to_pydatetime()), 0.25)
    assert summer.period(0)[0] == dt.datetime(2016, 5, 31, 22, tzinfo=UTC)
    offset = dt.timezone(dt.timedelta(hours=2))
    assert summer.interval(dt.datetime(2016, 6, 1, 0, 15, tzinfo=offset),
                           dt.datetime(2016, 6, 1, 0, 30, tzinfo=offset)) == 1
    naive = Calendar([dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, 1)], 1.0)
    assert naive.period(1)[0] == dt.datetime(2020, 1, 1, 1, tzinfo=UTC)
    for start, stop, field in [
            (dt.datetime(2016, 1, 19, 16, 5, tzinfo=UTC),
             dt.datetime(2016, 1, 19, 16, 20, tzinfo=UTC), "periodFrom"),
            (dt.datetime(2016, 1, 19, 16, tzinfo=UTC),
             dt.datetime(2016, 1, 19, 16, 30, tzinfo=UTC), "periodTo"),
            (dt.datetime(2016, 1, 19, 16, tzinfo=UTC),
             dt.datetime(2016, 1, 19, 16, tzinfo=UTC), "periodTo"),
            (dt.datetime(2016, 1, 19, 16), dt.datetime(2016, 1, 19, 16, 15), "periodFrom"),
            (dt.datetime(2017, 1, 19, 16, tzinfo=UTC),
             dt.datetime(2017, 1, 19, 16, 15, tzinfo=UTC), "periodFrom")]:
        with pytest.raises(Problem) as info:
            winter.interval(start, stop)
        assert info.value.code == "InconsistentPeriods"
        assert info.value.errors[0].property == field, (start, stop, info.value.detail)


def test_problem_bodies_follow_the_models():
    body = Problem("InvalidGridNode", "gridNodeId: not here", "gridNodeId", "bus-7").body("/x")
    problem = m.ProblemDetails.model_validate(body)
    assert problem.type == TYPE_BASE + "InvalidGridNode" and problem.status == "400"
    assert body["validation-errors"] == [{"property": "gridNodeId",
                                          "message": "gridNodeId: not here", "value": "bus-7"}]
    with pytest.raises(ValueError, match="code"):
        Problem("NoSuchCode", "x")


def test_tokens_without_a_dso(world):
    """On a market without a DSO: a token from a signed challenge (its ledger record), 401
    without it or after it expires, and EndpointNotSupported for the flexibility market."""
    fsp = fsp_client_module()
    alice = world.join("alice")
    client = fsp.UmeiClient(world.http, alice.key)
    r = client.call("GET", "/Markets")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    m.ProblemDetails.model_validate(r.json())
    before = world.http.app.state.market.ledger.size
    client.login()
    market = world.http.app.state.market
    assert market.ledger.size == before + 1
    record = list(market.ledger.entries("umei-token"))[-1]["payload"]
    assert record["participant"] == "alice" and record["key_id"] == alice.key_id
    assert client.token not in str(record)  # the ledger keeps the token's hash only
    r = client.call("GET", "/Markets")
    assert r.status_code == 405, r.text
    body = m.ProblemDetails.model_validate(r.json())
    assert body.type == TYPE_BASE + "EndpointNotSupported" and "dso" in body.detail
    # a challenge is used once
    c = client.http.post("/umei/auth/challenge", json={"keyId": client.key_id()}).json()
    m.Challenge.model_validate(c)
    signed = {"keyId": client.key_id(), "challenge": c["challenge"],
              "signature": alice.key.sign(bytes.fromhex(c["sign"])).hex()}
    assert client.http.post("/umei/auth/token", json=signed).status_code == 201
    again = client.http.post("/umei/auth/token", json=signed)
    assert again.status_code == 401 and "challenge" in again.json()["detail"]
    # a bad body names the field
    r = client.http.post("/umei/auth/token", json={"keyId": "xyz"})
    assert r.status_code == 400
    fields = {e["property"] for e in r.json()["validation-errors"]}
    assert fields == {"keyId", "challenge", "signature"}
    world.clock.now_ms += TOKEN_TTL_MS
    r = client.call("GET", "/Markets")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
