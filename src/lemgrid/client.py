"""A Python client of the market operator: holds an Ed25519 key and signs every request.

Example
-------
>>> client = MarketClient("http://127.0.0.1:8000", key)          # doctest: +SKIP
>>> client.submit_order("s1", order_id="o1", side="buy", quantity_wh=1000,
...                     price_meur_per_kwh=250, interval=0)      # doctest: +SKIP
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.ledger.identity import key_id, registration_payload, sign_payload
from lemgrid.service import signing


class MarketClient:
    """Signed requests to a market server.

    Parameters
    ----------
    base_url : str
        E.g. ``http://127.0.0.1:8000``.
    key : Ed25519PrivateKey
        This client's key.
    transport : httpx client, optional
        Any object with httpx's ``request`` (e.g. FastAPI's ``TestClient``); default a new
        ``httpx.Client``.
    clock_ms : callable, optional
        Time put in the signature [ms]; wall time by default.
    """

    def __init__(self, base_url: str, key: Ed25519PrivateKey, *, transport: Any = None,
                 clock_ms: Any = None) -> None:
        self.key, self.key_id = key, key_id(key)
        self.http = transport if transport is not None else httpx.Client(base_url=base_url,
                                                                          timeout=30)
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._log_id: str | None = None
        self.participant: str | None = None
        self.meter: str | None = None

    def headers(self, method: str, path: str, body: bytes, *, nonce: str | None = None,
                timestamp_ms: int | None = None) -> dict[str, str]:
        """The signature headers of a request."""
        nonce = nonce or secrets.token_hex(12)
        ts = self.clock_ms() if timestamp_ms is None else timestamp_ms
        sig = self.key.sign(signing.request_message(method, path, body, ts, nonce)).hex()
        return {signing.KEY_HEADER: self.key_id, signing.TIME_HEADER: str(ts),
                signing.NONCE_HEADER: nonce, signing.SIG_HEADER: sig}

    def request(self, method: str, path: str, body: Any = None, *,
                idempotency_key: str | None = None, signed: bool = True,
                **sign_options: Any) -> httpx.Response:
        """Send a (signed) request; returns the response whatever its status."""
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if body is not None else {}
        if signed:
            headers.update(self.headers(method, path, data, **sign_options))
        if idempotency_key is not None:
            headers[signing.IDEMPOTENCY_HEADER] = idempotency_key
        return self.http.request(method, path, content=data, headers=headers)

    # -- conveniences -----------------------------------------------------------------------
    @property
    def log_id(self) -> str:
        if self._log_id is None:
            self._log_id = self.http.get("/health").json()["log_id"]
        return self._log_id

    def register(self, participant: str, meter: str, role: str = "participant",
                 members: list[str] | None = None) -> httpx.Response:
        """Register this key (the operator then approves it)."""
        self.participant, self.meter = participant, meter
        reg = registration_payload(self.key, participant, meter, self.log_id)
        body = {k: reg[k] for k in ("participant", "meter", "public_key", "pop_sig")}
        return self.request("POST", "/register", {**body, "role": role,
                                                  "members": members or []}, signed=False)

    def signed_record(self, payload: dict) -> dict:
        return {"payload": payload, "signer": self.key_id, "sig": sign_payload(self.key, payload)}

    def order_body(self, market_id: str, *, order_id: str, side: str, quantity_wh: int,
                   price_meur_per_kwh: int, interval: int, nonce: str | None = None,
                   valid_until_ms: int | None = None) -> dict:
        """A signed order in the ledger's canonical form (``valid_until_ms``: in a continuous
        session, it leaves the book at the first event after that time)."""
        return self.signed_record({
            "kind": "order", "log_id": self.log_id, "market_id": market_id,
            "interval": interval, "order_id": order_id, "participant": self.participant,
            "meter": self.meter, "side": side, "quantity_wh": quantity_wh,
            "price_meur_per_kwh": price_meur_per_kwh, "nonce": nonce or secrets.token_hex(12),
            **({} if valid_until_ms is None else {"valid_until_ms": valid_until_ms})})

    def submit_order(self, market_id: str, *, idempotency_key: str | None = None,
                     **order: Any) -> httpx.Response:
        """Sign and submit an order (``order_id``, ``side``, ``quantity_wh``,
        ``price_meur_per_kwh``, ``interval``)."""
        return self.request("POST", f"/markets/{market_id}/orders",
                            self.order_body(market_id, **order),
                            idempotency_key=idempotency_key or order["order_id"])

    def cancel(self, market_id: str, order_id: str) -> httpx.Response:
        """Sign and send a cancel of one's own order."""
        body = self.signed_record({"kind": "cancel", "log_id": self.log_id,
                                   "market_id": market_id, "order_id": order_id,
                                   "participant": self.participant,
                                   "nonce": secrets.token_hex(12)})
        return self.request("POST", f"/markets/{market_id}/cancel", body)

    def sealed_bodies(self, market_id: str, *, nonce: str | None = None,
                      **order: Any) -> tuple[dict, dict]:
        """A signed commit and the signed reveal that opens it, for one order (``order_id``,
        ``side``, ``quantity_wh``, ``price_meur_per_kwh``, ``interval``); keep the reveal
        secret until the reveal window."""
        from lemgrid.ledger.sealed import reveal, seal

        payload = self.order_body(market_id, **order)["payload"]
        commit, salt = seal(payload, self.key, nonce or secrets.token_hex(12))
        opening = reveal(payload, salt, self.key, secrets.token_hex(12))
        return commit.to_json(), opening.to_json()

    def reading_body(self, market_id: str, *, interval: int, import_wh: int, export_wh: int,
                     nonce: str | None = None) -> dict:
        """A signed meter reading of this key's meter [Wh registered over the interval]."""
        return self.signed_record({
            "kind": "meter-reading", "log_id": self.log_id, "market_id": market_id,
            "interval": interval, "participant": self.participant, "meter": self.meter,
            "import_wh": import_wh, "export_wh": export_wh,
            "nonce": nonce or secrets.token_hex(12)})

    def submit_reading(self, market_id: str, **reading: Any) -> httpx.Response:
        """Sign and post a meter reading (``interval``, ``import_wh``, ``export_wh``)."""
        return self.request("POST", f"/markets/{market_id}/readings",
                            self.reading_body(market_id, **reading))
    def community_bid_body(self, market_id: str, *, interval: int, bid: dict,
                           nonce: str | None = None) -> dict:
        """A signed bid into a community session; ``bid`` holds its data fields (``load_kw``,
        ``pv_kw``, ``reference_eur``, ``assets``, ``final_state``; see
        :func:`lemgrid.service.community.bid_payload`)."""
        return self.signed_record({
            "kind": "community-bid", "log_id": self.log_id, "market_id": market_id,
            "interval": interval, "participant": self.participant, "meter": self.meter, **bid,
            "nonce": nonce or secrets.token_hex(12)})

    def submit_community_bid(self, market_id: str, **bid: Any) -> httpx.Response:
        """Sign and post a community bid (see :meth:`community_bid_body`)."""
        return self.request("POST", f"/markets/{market_id}/community-bids",
                            self.community_bid_body(market_id, **bid))

    def flex_offer_body(self, *, offer_id: str, interval: int, resource: str, asset: int,
                        direction: str, power_w: int, price_meur_per_kwh: int,
                        meter: str | None = None, min_power_w: int | None = None,
                        price_points: list[list[int]] | None = None,
                        availability_meur_per_kw_h: int | None = None) -> dict:
        """A signed flexibility offer for a resource behind ``meter`` (default: one's own;
        an aggregator names a member's); ``min_power_w``: activated at least this much or not
        at all; ``price_points``: its price curve, [W, m€/kWh] points from [0,
        ``price_meur_per_kwh``] to [``power_w``, the last W's price];
        ``availability_meur_per_kw_h``: a long-term product's availability price [m€ per kW
        and hour reserved]."""
        return self.signed_record({
            "kind": "flex-offer", "log_id": self.log_id, "offer_id": offer_id,
            "participant": self.participant, "meter": meter or self.meter,
            "interval": interval, "resource": resource, "asset": asset,
            "direction": direction, "power_w": power_w,
            "price_meur_per_kwh": price_meur_per_kwh, "nonce": secrets.token_hex(12),
            **({} if min_power_w is None else {"min_power_w": min_power_w}),
            **({} if price_points is None else {"price_points": price_points}),
            **({} if availability_meur_per_kw_h is None
               else {"availability_meur_per_kw_h": availability_meur_per_kw_h})})

    def submit_flex_offer(self, **offer: Any) -> httpx.Response:
        """Sign and post a flexibility offer (see :meth:`flex_offer_body`)."""
        return self.request("POST", "/grid/offers", self.flex_offer_body(**offer))

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)
