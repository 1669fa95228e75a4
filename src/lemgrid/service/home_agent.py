"""One participant's agent against a running market server (``lemgrid agent``): what a home
energy manager would run.

The agent reads its forecast (net energy per interval) from a CSV file, watches the server's
open sessions and, once per session whose interval it has a forecast for, signs and submits one
order: a sell order for a surplus, a buy order for a need, priced by its strategy with the lab's
agents (:mod:`lemgrid.agents.strategies`): a price taker bids the retail price and asks the
feed-in tariff; a ZI-C trader draws its limit uniformly between them (Gode and Sunder, 1993).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lemgrid.client import MarketClient
from lemgrid.errors import InputError, NotBuiltError

#: Strategies an agent can run (the lab's names).
STRATEGIES = ("price-taker", "zi-c")


@dataclass(frozen=True)
class Forecast:
    """Net energy the household expects per interval: positive exports [kWh]."""

    interval: np.ndarray
    net_kwh: np.ndarray

    def at(self, interval: int) -> float | None:
        hit = np.flatnonzero(self.interval == interval)
        return float(self.net_kwh[hit[0]]) if len(hit) else None


def read_forecast(path: str | Path) -> Forecast:
    """A forecast CSV with the columns ``interval`` (the server's session interval, an integer
    >= 0) and ``net_kwh`` (positive: surplus to sell, negative: need to buy) [kWh].

    Raises
    ------
    InputError
        Naming the row and the column of a bad value.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"interval", "net_kwh"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                             "(need interval, net_kwh)")
        intervals, values = [], []
        for row_number, row in enumerate(reader, start=2):
            try:
                interval = int(row["interval"])
                if interval < 0:
                    raise ValueError
            except ValueError:
                raise InputError(f"{path} row {row_number}: interval must be an integer >= 0, "
                                 f"got {row['interval']!r}") from None
            try:
                value = float(row["net_kwh"])
                if not np.isfinite(value):
                    raise ValueError
            except ValueError:
                raise InputError(f"{path} row {row_number}: net_kwh must be a finite number, "
                                 f"got {row['net_kwh']!r}") from None
            if interval in intervals:
                raise InputError(f"{path} row {row_number}: interval {interval} appears twice")
            intervals.append(interval)
            values.append(value)
    return Forecast(np.array(intervals, dtype=np.int64), np.array(values, dtype=float))


@dataclass
class HomeAgent:
    """A participant's agent (see the module's docstring).

    Parameters
    ----------
    client : MarketClient
        Signed in with the participant's key (registered and approved).
    forecast : Forecast
    strategy : {'price-taker', 'zi-c'}
    buy_limit_eur_per_kwh, sell_limit_eur_per_kwh : float
        What buying from the retailer costs and what selling to it pays [EUR/kWh]: a buyer never
        bids above the first, a seller never asks below the second.
    seed : int
        Random stream of the ZI-C draws.
    """

    client: MarketClient
    forecast: Forecast
    strategy: str
    buy_limit_eur_per_kwh: float
    sell_limit_eur_per_kwh: float
    seed: int = 0
    submitted: dict[str, dict] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy == "zip":
            raise NotBuiltError("--strategy zip: a single agent's ZIP learning from the server's "
                                "trades is not built; use price-taker or zi-c")
        if self.strategy not in STRATEGIES:
            raise InputError(f"--strategy: must be one of {', '.join(STRATEGIES)}, got "
                             f"{self.strategy!r}")
        if self.buy_limit_eur_per_kwh < self.sell_limit_eur_per_kwh:
            raise InputError("--buy-limit: below --sell-limit; no local trade can help")
        self.rng = np.random.default_rng(self.seed)

    def limit_eur_per_kwh(self, side: str) -> float:
        """The limit price of an order on ``side`` under the agent's strategy [EUR/kWh]."""
        from lemgrid.agents.strategies import random_limits

        if self.strategy == "zi-c":
            return float(random_limits(self.buy_limit_eur_per_kwh, self.sell_limit_eur_per_kwh,
                                       (), self.rng))
        return self.buy_limit_eur_per_kwh if side == "buy" else self.sell_limit_eur_per_kwh

    def open_sessions(self) -> list[dict]:
        """Sessions still open for orders (from the server's public view)."""
        r = self.client.http.get("/dashboard/api/public")
        if r.status_code != 200:
            raise InputError(f"--server: no market view ({r.status_code} {r.text[:200]})")
        view = r.json()
        return [s for s in view["sessions"]
                if s["state"] == "open" and s["gate_ms"] > view["clock_ms"]]

    def step(self) -> list[dict]:
        """Bid once in every open session with a forecast and no order of ours yet; returns
        the orders submitted."""
        done = []
        for s in self.open_sessions():
            market_id = s["market_id"]
            net = self.forecast.at(int(s["interval"]))
            if market_id in self.submitted or market_id in self.refused or net is None:
                continue
            quantity_wh = round(abs(net) * 1000)
            if quantity_wh == 0:
                continue
            side = "sell" if net > 0 else "buy"
            order: dict[str, Any] = {
                "order_id": f"{self.client.participant}-{market_id}", "side": side,
                "quantity_wh": quantity_wh, "interval": int(s["interval"]),
                "price_meur_per_kwh": round(self.limit_eur_per_kwh(side) * 1000)}
            r = self.client.submit_order(market_id, **order)
            if r.status_code == 201:
                self.submitted[market_id] = {**order, "seq": r.json()["seq"]}
                done.append(self.submitted[market_id])
            else:
                self.refused[market_id] = f"{r.status_code} {r.text[:200]}"
        return done

    def run(self, poll_s: float, rounds: int | None = None, on_order: Any = None) -> None:
        """Step every ``poll_s`` seconds (``rounds`` times, or until interrupted)."""
        n = 0
        while rounds is None or n < rounds:
            for order in self.step():
                if on_order is not None:
                    on_order(order)
            n += 1
            if rounds is None or n < rounds:
                time.sleep(poll_s)
