"""An FSP (aggregator) trading flexibility on a UMEI platform, here ``lemgrid serve``.

Written against the UMEI 1.0 interface (``/Portfolios``, ``/FlexibilityZones``,
``/BaselineIntervals``, ``/Orders``, ``/Trades``, ``/MeterReadings``), with httpx. The one thing
UMEI leaves to the platform is how a client gets its bearer token; on lemgrid it is a challenge
signed with the FSP's registered Ed25519 key (``docs/umei.md``).

The FSP's plan is a JSON list of what it is willing to sell, one item per portfolio, period and
direction::

    [{"portfolioId": "ev-3", "periodFrom": "2016-01-19T16:00:00Z", "regulationType": "Down",
      "quantityMw": 0.011, "unitPriceEurPerMwh": 30, "baselineMw": -0.011}]

and, where the platform buys long-term (long-flex) products, ``availabilityEurPerMwH`` (the
availability price of the capacity contract the order calls) and ``periodTo``.

Run::

    python examples/umei_fsp_client.py --url http://127.0.0.1:8000 --key fsp.pem --plan plan.json

It reads the flexibility zones, posts a baseline and a sell order for every planned item whose
period is in a zone, waits for the trades, posts a meter reading per traded period (baseline
plus the activation: the FSP delivered) and prints its settlement as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class UmeiClient:
    """A bearer-token UMEI client.

    Parameters
    ----------
    http : httpx.Client
        Client whose base URL is the platform's (``http://host:8000``).
    key : Ed25519PrivateKey
        The FSP's key, registered and approved on the platform.
    prefix : str
        Where the UMEI paths start (``/umei`` on lemgrid).
    """

    def __init__(self, http: httpx.Client, key: Ed25519PrivateKey, prefix: str = "/umei") -> None:
        self.http, self.key, self.prefix = http, key, prefix
        self.token: str | None = None

    def key_id(self) -> str:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
        import hashlib

        return hashlib.sha256(raw).hexdigest()[:32]

    def login(self) -> None:
        """Sign the platform's challenge; keep the bearer token."""
        c = self.http.post(f"{self.prefix}/auth/challenge", json={"keyId": self.key_id()})
        c.raise_for_status()
        signature = self.key.sign(bytes.fromhex(c.json()["sign"])).hex()
        r = self.http.post(f"{self.prefix}/auth/token", json={
            "keyId": self.key_id(), "challenge": c.json()["challenge"], "signature": signature})
        r.raise_for_status()
        self.token = r.json()["access_token"]

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.http.request(method, self.prefix + path, json=body, headers=headers,
                                 params={k.replace("_", "."): v for k, v in params.items()})

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        r = self.call(method, path, body, **params)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def search(self, path: str, **params: Any) -> Iterator[dict]:
        """Every hit of a search, page by page (take/skip)."""
        skip = 0
        while True:
            page = self.ok("GET", path, take=200, skip=skip, **params)
            yield from page["items"]
            skip += len(page["items"])
            if not page["items"] or skip >= page["numberOfHits"]:
                return


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def _z(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def offer(client: UmeiClient, plan: list[dict]) -> list[dict]:
    """Post a baseline and a sell order for each planned item inside a flexibility zone;
    returns the orders as the platform answered them.

    Where the platform has a capacity market (long-flex: quantity type ``Capacity``), an item
    with ``availabilityEurPerMwH`` is first offered there as a contract for its period (any
    period the platform accepts, with ``periodTo`` when it is not a zone's), and its sell order
    calls that contract (``longflexContractId``)."""
    markets = list(client.search("/Markets"))
    market = next(m for m in markets if m.get("quantityType", "ActivePower") == "ActivePower")
    capacity = next((m for m in markets if m.get("quantityType") == "Capacity"), None)
    zones = {_utc(z["periodFrom"]): z for z in client.search("/FlexibilityZones")}
    mine = {p["id"] for p in client.search("/Portfolios")}
    posted, baselined = [], set()
    for item in plan:
        start = _utc(item["periodFrom"])
        zone = zones.get(start)
        long_flex = capacity is not None and "availabilityEurPerMwH" in item
        end = zone["periodTo"] if zone is not None else item.get("periodTo") if long_flex \
            else None
        if end is None or item["portfolioId"] not in mine:
            continue
        period = {"periodFrom": _z(start), "periodTo": end}
        if (item["portfolioId"], start) not in baselined and "baselineMw" in item:
            client.ok("POST", "/BaselineIntervals", {
                "portfolioId": item["portfolioId"], **period,
                "quantity": round(item["baselineMw"], 3), "quantityType": "ActivePower"})
            baselined.add((item["portfolioId"], start))
        sell = {"portfolioId": item["portfolioId"], "side": "Sell",
                "regulationType": item["regulationType"], **period}
        contract = {}
        if long_flex:
            assert capacity is not None
            contract = {"longflexContractId": client.ok("POST", "/Orders", {
                **sell, "marketId": capacity["id"],
                "pricePoints": [{"quantity": item["quantityMw"],
                                 "unitPrice": item["availabilityEurPerMwH"]}]})["id"]}
        posted.append(client.ok("POST", "/Orders", {
            **sell, "marketId": market["id"], **contract,
            **({"flexibilityZoneId": zone["id"]} if zone is not None else {}),
            "pricePoints": [{"quantity": item["quantityMw"],
                             "unitPrice": item["unitPriceEurPerMwh"]}]}))
    return posted


def follow_trades(client: UmeiClient, orders: list[dict], timeout_s: float = 0.0,
                  poll_s: float = 5.0) -> list[dict]:
    """The trades of the FSP's orders, once they are all completed (or at ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    ids = {o["id"] for o in orders}
    while True:
        states = {o["id"]: o["status"] for o in client.search("/Orders") if o["id"] in ids}
        if all(s == "Completed" for s in states.values()) or time.monotonic() >= deadline:
            return [t for t in client.search("/Trades") if t.get("orderId") in ids]
        time.sleep(poll_s)


def deliver(client: UmeiClient, trades: list[dict]) -> list[dict]:
    """A meter reading per traded portfolio and period: its baseline moved by the activation
    (by the platform's exact power where it states it: a trade's quantity is rounded to UMEI's
    0.001 MW)."""
    baselines = {(b["portfolioId"], b["periodFrom"]): b["quantity"]
                 for b in client.search("/BaselineIntervals")}
    moved: dict[tuple[str, str], float] = {}
    for t in trades:
        sign = 1 if t["regulationType"] == "Up" else -1
        key = (t["portfolioId"], t["periodFrom"])
        quantity = t.get("lemgrid", {}).get("powerW", t["quantity"] * 1e6) / 1e6
        moved[key] = moved.get(key, 0.0) + sign * quantity
    readings = []
    for (portfolio, start), change in sorted(moved.items()):
        trade = next(t for t in trades if (t["portfolioId"], t["periodFrom"]) == (portfolio,
                                                                                start))
        readings.append(client.ok("POST", "/MeterReadings", {
            "portfolioId": portfolio, "periodFrom": start, "periodTo": trade["periodTo"],
            "quantity": round(baselines.get((portfolio, start), 0.0) + change, 3),
            "quantityType": "ActivePower"}))
    return readings


def settlement(trades: list[dict]) -> dict:
    """What the FSP is paid: per trade quantity x price x hours, and lemgrid's exact amount when
    the platform states it."""
    total_eur = exact_eur = 0.0
    for t in trades:
        hours = (_utc(t["periodTo"]) - _utc(t["periodFrom"])).total_seconds() / 3600
        total_eur += t["quantity"] * t["unitPrice"] * hours
        exact_eur += t.get("lemgrid", {}).get("utilisationEur", 0.0)
    return {"n_trades": len(trades), "payment_eur": round(exact_eur or total_eur, 6),
            "payment_from_umei_fields_eur": round(total_eur, 6)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="the FSP's Ed25519 private key (PEM)")
    parser.add_argument("--plan", required=True, help="JSON list of what to offer")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        print("--key: not an Ed25519 private key", file=sys.stderr)
        return 2
    with open(args.plan) as f:
        plan = json.load(f)
    with httpx.Client(base_url=args.url, timeout=30) as http:
        client = UmeiClient(http, key)
        client.login()
        orders = offer(client, plan)
        trades = follow_trades(client, orders, timeout_s=args.timeout_s)
        deliver(client, trades)
        print(json.dumps({"n_orders": len(orders), **settlement(trades)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
