"""``lemgrid simulate --via-server``: the scenario's agents trade as HTTP clients of a market
server, each with its own Ed25519 key, on a simulated clock.

The agents (price takers, ZI, ZIP, optimising prosumers) bid in-process as in ``simulate``; where
the lab would clear their order batch itself (:func:`lemgrid.market.clear`), every order is
signed by its participant's key and submitted to the server, one session per interval; the
operator closes the gates, the server clears with the lab's mechanism, and the trades and the
statements the server publishes become the clearing result the simulation settles. With no URL
the server runs in this process on loopback (FastAPI's in-process transport) with a simulated
clock; against a URL the clock is the server's and the gates are waited for.

What crosses the wire is in the ledger's integer units (Wh, m€/kWh): orders are rounded to the
Wh and the m€/kWh, trades down to the Wh, money is the server's statements [µ€]. That is the only
difference from ``simulate`` in-process: ``tests/service/test_via_server.py`` shows, on a day,
the same trades (to the Wh), market bills equal to the cent, and total bills apart by no more
than that Wh rounding of the traded energy is worth.

The ``community`` design clears through the server as well: where the lab would clear the
community itself (:func:`lemgrid.sim.designs.clear_community`), the operator opens a community
session (:mod:`lemgrid.service.community`), every member signs and posts its bid, the server's
manager clears with the lab's code and each member reads back its own schedule, asset plans and
positions. Reals cross the wire as decimal strings, exact both ways, so the schedule and the bills
are ``simulate``'s exactly. Order-based designs (``uniform``, ``pay-as-bid``, ``continuous``) and
``community`` clear through the server; the others raise :class:`~lemgrid.errors.NotBuiltError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.client import MarketClient
from lemgrid.errors import InputError, NotBuiltError
from lemgrid.ledger.identity import generate_key
from lemgrid.service.engine import MECHANISMS

#: Interval length of the server's sessions on the simulated clock [ms].
INTERVAL_MS = 900_000
#: Start of the in-process server's simulated clock [ms since the Unix epoch].
T0_MS = 1_780_000_000_000


class SimulatedClock:
    """The market clock of an in-process server [ms]; :meth:`wait_until` jumps."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def wait_until(self, ms: int) -> None:
        self.now_ms = max(self.now_ms, ms)


class WallClock:
    """Wall time [ms]; :meth:`wait_until` sleeps."""

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000

    def wait_until(self, ms: int) -> None:
        time.sleep(max(0.0, (ms - self()) / 1000))


class ServerClearing:
    """Clears order batches through a market server (see the module's docstring).

    Parameters
    ----------
    http : httpx-like client
        Transport to the server (``httpx.Client(base_url=...)`` or FastAPI's ``TestClient``).
    operator_key : Ed25519PrivateKey
        The operator's key: approves the agents' keys, opens sessions and closes gates.
    clock : SimulatedClock or WallClock
        The server's clock.
    gate_margin_ms : int
        Time between opening a batch's sessions and their gate [ms]; on a wall clock at least
        50 ms per order of the batch, to cover their submission.
    """

    def __init__(self, http: Any, operator_key: Ed25519PrivateKey, clock: Any,
                 gate_margin_ms: int = INTERVAL_MS) -> None:
        self.http, self.clock = http, clock
        self.gate_margin_ms = gate_margin_ms
        self.operator = MarketClient("", operator_key, transport=http, clock_ms=clock)
        self.operator.participant = "operator"
        self.agents: dict[str, MarketClient] = {}
        self.calls = 0
        self.next_interval = 0
        #: Requests sent (orders, statements, sessions, ...), for the report.
        self.n_requests = 0
        #: The lab's clearing functions while :func:`clearing_through` replaces them.
        self.lab: dict[str, Callable] = {}

    @contextlib.contextmanager
    def lab_clearing(self) -> Iterator[None]:
        """Put the lab's clearing back while the block runs (the server's own clearing)."""
        routed = {where: getattr(module, name) for where, (module, name) in _ROUTED.items()
                  if where in self.lab}
        for where, function in self.lab.items():
            setattr(*_ROUTED[where], function)
        try:
            yield
        finally:
            for where, function in routed.items():
                setattr(*_ROUTED[where], function)

    def clear_uniform(self, orders: Any, k: float | None = None) -> Any:
        """:func:`lemgrid.market.clear_uniform` through the server (the intraday sessions)."""
        if k not in (None, 0.5):
            raise NotBuiltError("--via-server: the server's uniform auction prices at k = 0.5")
        return self.clear(orders, "uniform")

    def _ok(self, response: Any, what: str) -> Any:
        self.n_requests += 1
        if response.status_code >= 300:
            raise InputError(f"--via-server: {what} refused by the server: "
                             f"{response.status_code} {response.text[:300]}")
        return response.json()

    def agent(self, participant: str) -> MarketClient:
        """The participant's client, with a fresh key registered and approved on first use."""
        client = self.agents.get(participant)
        if client is None:
            client = MarketClient("", generate_key(), transport=self.http, clock_ms=self.clock)
            self._ok(client.register(participant, participant), f"registering {participant!r}")
            self._ok(self.operator.request("POST", f"/identities/{participant}/approve"),
                     f"approving {participant!r}")
            self.agents[participant] = client
        return client

    def clear(self, orders: Any, mechanism: str = "uniform", *, k: float | None = None) -> Any:
        """Clear an :class:`~lemgrid.market.OrderBatch` through the server; the lab's
        :class:`~lemgrid.market.ClearingResult` built from the server's trades and statements."""
        from lemgrid.market import BUY, SELL, ClearingResult

        if mechanism not in MECHANISMS:
            raise NotBuiltError(f"--via-server: mechanism {mechanism!r} is not cleared by the "
                                f"server (it clears {', '.join(MECHANISMS)})")
        if k is not None:
            raise NotBuiltError("--via-server: the server clears with each mechanism's default "
                                "price rule; a price-rule weight k is not sent")
        self.calls += 1
        n = len(orders)
        intervals = sorted(set(int(t) for t in orders.interval))
        server_interval = {t: self.next_interval + i for i, t in enumerate(intervals)}
        self.next_interval += len(intervals)
        quantity_wh = np.rint(np.asarray(orders.quantity_kwh) * 1000).astype(np.int64)
        price_meur = np.rint(np.asarray(orders.price_eur_per_kwh) * 1000).astype(np.int64)
        participants = [str(p) for p in orders.participant]
        for who in sorted(set(participants)):
            self.agent(who)
        sellable: dict[tuple[str, int], int] = defaultdict(int)
        for i in range(n):
            if orders.side[i] == SELL:
                sellable[(participants[i], int(orders.interval[i]))] += int(quantity_wh[i])
        for (who, t), wh in sorted(sellable.items()):  # the meters' forecast sellable energy
            self._ok(self.operator.request("POST", "/capabilities", {
                "participant": who, "interval": server_interval[t], "sellable_wh": wh,
                "source": "forecast"}), f"capability of {who!r}")
        # on a wall clock the gate must leave time to submit every order (~50 ms each, loaded)
        margin_ms = self.gate_margin_ms if isinstance(self.clock, SimulatedClock) else max(
            self.gate_margin_ms, 50 * n)
        gate_ms = self.clock() + margin_ms
        market_id = {t: f"c{self.calls}-{t}" for t in intervals}
        for t in intervals:
            self._ok(self.operator.request("POST", "/sessions", {
                "market_id": market_id[t], "interval": server_interval[t], "gate_ms": gate_ms,
                "mechanism": mechanism}), f"session {market_id[t]!r}")
        for i in np.lexsort((orders.timestamp_s, orders.interval)):  # arrival order
            if quantity_wh[i] <= 0:
                continue  # less than half a Wh: nothing the ledger can carry
            t = int(orders.interval[i])
            self._ok(self.agents[participants[i]].submit_order(
                market_id[t], order_id=f"{market_id[t]}-o{i}", interval=server_interval[t],
                side="buy" if orders.side[i] == BUY else "sell",
                quantity_wh=int(quantity_wh[i]), price_meur_per_kwh=int(price_meur[i])),
                f"order {i} of {participants[i]!r}")
        self.clock.wait_until(gate_ms)
        with self.lab_clearing():  # an in-process server clears with the lab's own code
            self._ok(self.operator.request("POST", "/admin/tick"), "gate closure")
        trade_buy, trade_sell, trade_kwh, trade_price = [], [], [], []
        statement_eur: dict[tuple[str, int], float] = {}
        for t in intervals:
            session = self._ok(self.operator.get(f"/sessions/{market_id[t]}"), "session state")
            if session["state"] != "settled":
                raise InputError(f"--via-server: session {market_id[t]!r} is {session['state']}"
                                 " after its gate (is the server's scheduler running?)")
            for x in self._ok(self.operator.get(f"/markets/{market_id[t]}/trades"), "trades"):
                trade_buy.append(int(x["buy_order_id"].rsplit("-o", 1)[1]))
                trade_sell.append(int(x["sell_order_id"].rsplit("-o", 1)[1]))
                trade_kwh.append(x["quantity_wh"] / 1000)
                trade_price.append(x["price_meur_per_kwh"] / 1000)
        by_id = {market_id[t]: t for t in intervals}
        for who in sorted(set(participants)):  # each agent reads its own statements
            mine = self._ok(self.agents[who].get("/dashboard/api/me"), f"statements of {who!r}")
            for x in mine["statements"]:
                if x["market_id"] in by_id:
                    statement_eur[(who, by_id[x["market_id"]])] = x["amount_ueur"] / 1e6
        market_key, order_market = orders.markets()
        result = ClearingResult.from_trades(
            mechanism=mechanism, price_rule=f"{mechanism} (cleared by the market server)",
            orders=orders, order_market=np.asarray(order_market, dtype=np.int64),
            market_key=market_key, trade_buy=np.array(trade_buy, dtype=np.int64),
            trade_sell=np.array(trade_sell, dtype=np.int64),
            trade_quantity_kwh=np.array(trade_kwh, dtype=float),
            trade_price_eur_per_kwh=np.array(trade_price, dtype=float))
        return dataclasses.replace(result, cash_flow_eur=self._cash(
            orders, participants, result.cash_flow_eur, statement_eur))

    def clear_community(self, problem: Any, reference_eur: np.ndarray, prices: Any
                        ) -> tuple[Any, Any]:
        """:func:`lemgrid.sim.designs.clear_community` through the server: the operator opens a
        community session with the problem's terms, every member signs and posts its bid (its
        forecasts and assets, reals as exact decimal strings), the gate closes, the server's
        manager clears, and each member reads back its schedule, asset plans and positions; the
        reference bills the server computed must be the lab's, and each member's statement
        [µ€] its positions' money."""
        from dataclasses import fields

        from lemgrid.assets.kinds import KindPlan
        from lemgrid.errors import InfeasibleError
        from lemgrid.ledger.units import decimals, reals
        from lemgrid.market.community import CommunityResult
        from lemgrid.service.community import POSITION_FIELDS, bid_payload
        from lemgrid.settlement.bills import Positions

        n_t, n = problem.shape
        if not (np.all(problem.import_eur_per_kwh == prices.retail_eur_per_kwh)
                and np.all(problem.export_eur_per_kwh == prices.export_eur_per_kwh)
                and (problem.local_network_eur_per_kwh, problem.levies_eur_per_kwh)
                == (prices.local_network_eur_per_kwh, prices.levies_eur_per_kwh)):
            raise NotBuiltError("--via-server: a community session prices every interval and "
                                "member at the retailer's prices (no prices over time yet)")
        self.calls += 1
        ids = [str(x) for x in problem.ids]
        for who in ids:
            self.agent(who)
        interval, market_id = self.next_interval, f"c{self.calls}-community"
        self.next_interval += n_t
        gate_ms = self.clock() + (self.gate_margin_ms if isinstance(self.clock, SimulatedClock)
                                  else max(self.gate_margin_ms, 200 * n))
        self._ok(self.operator.request("POST", "/community/sessions", {
            "market_id": market_id, "interval": interval, "n_intervals": n_t,
            "dt_h": decimals(problem.dt_h), "gate_ms": gate_ms, "members": ids,
            "bus": [int(b) for b in problem.bus],
            "prices": {f.name: decimals(getattr(prices, f.name)) for f in fields(prices)},
            "curtailment_eur_per_kwh": decimals(problem.curtailment_eur_per_kwh),
            "battery_wear_eur_per_kwh": decimals(problem.battery_wear_eur_per_kwh)}),
            f"community session {market_id!r}")
        for i, who in enumerate(ids):
            self._ok(self.agents[who].submit_community_bid(
                market_id, interval=interval, bid=bid_payload(problem, i)),
                f"community bid of {who!r}")
        self.clock.wait_until(gate_ms)
        with self.lab_clearing():  # an in-process server clears with the lab's own code
            self._ok(self.operator.request("POST", "/admin/tick"), "gate closure")
        state = self._ok(self.operator.get(f"/sessions/{market_id}"), "session state")["state"]
        if state == "failed":
            raise InfeasibleError(f"--via-server: the server's community clearing of "
                                  f"{market_id!r} found no schedule")
        if state != "settled":
            raise InputError(f"--via-server: community session {market_id!r} is {state} after "
                             "its gate (is the server's scheduler running?)")
        mine = [self._ok(self.agents[who].get(f"/markets/{market_id}/community/{who}"),
                         f"community result of {who!r}") for who in ids]
        public = mine[0]["community"]
        # the manager computed each member's bill alone from its bid: the lab's, exactly
        served_reference = np.array([float(x["reference_eur"]) for x in mine])
        if not np.array_equal(served_reference, reference_eur):
            raise InputError(f"--via-server: the server's reference bills of {market_id!r} "
                             "differ from the lab's")

        def column(*keys: str) -> np.ndarray:
            """The members' series at ``keys`` of their results as columns (T, N)."""
            def at(x: Any) -> Any:
                for key in keys:
                    x = x[key]
                return x
            return np.stack([reals(at(x), ".".join(keys), allow_nan=True) for x in mine],
                            axis=-1)

        positions = Positions(
            **{f: column("positions", f) for f in POSITION_FIELDS},
            price_eur_per_kwh=reals(public["local_price_eur_per_kwh"], "local price",
                                    allow_nan=True))
        kinds = {}
        for name, table in problem.kinds.items():
            # each member's rows go back to where its assets sit in the lab's table
            where = [np.flatnonzero(table.owner == i) for i in range(n)]
            owners = [i for i in range(n) if len(where[i])]

            def scatter(*keys: str) -> np.ndarray:
                out = np.zeros((n_t, len(table)))
                for i in owners:
                    plan = mine[i]["plans"][name]
                    for key in keys:
                        plan = plan[key]
                    out[:, where[i]] = reals(plan, f"{name}.{keys[-1]}").reshape(n_t, -1)
                return out

            details = mine[owners[0]]["plans"][name]["detail"] if owners else {}
            kinds[name] = KindPlan(table.owner, scatter("output_kw"), scatter("state"),
                                   {k: scatter("detail", k) for k in details})
        result = CommunityResult(
            schedule_kw=positions.scheduled_kw, import_kw=reals(public["import_kw"], "import_kw"),
            export_kw=reals(public["export_kw"], "export_kw"),
            curtailment_kw=column("curtailment_kw"),
            price_eur_per_kwh=reals(public["price_eur_per_kwh"], "price_eur_per_kwh"),
            bus_price_eur_per_kwh=None, dlmp_components=None,
            member_price_eur_per_kwh=column("member_price_eur_per_kwh"),
            member_cost_eur=np.array([float(x["member_cost_eur"]) for x in mine]),
            retailer_cost_eur=float(public["retailer_cost_eur"]),
            welfare_eur=float(public["welfare_eur"]), solve_seconds=float("nan"),
            lp_solves=int(public["lp_solves"]), kinds=kinds)
        assert positions.sharing_eur is not None
        for i, who in enumerate(ids):  # the statements are the positions' money to the µ€
            statement = self._ok(self.agents[who].get(
                f"/markets/{market_id}/statements/{who}"), f"statement of {who!r}")
            money_ueur = -1e6 * (positions.market_paid_eur[:, i].sum()
                                 + positions.sharing_eur[:, i].sum())  # + receives
            if abs(statement["amount_ueur"] - money_ueur) > 1:
                raise InputError(f"--via-server: the statement of {who!r} in {market_id!r} "
                                 f"({statement['amount_ueur']} µ€) is not its positions' money "
                                 f"({money_ueur:.0f} µ€)")
        return result, positions

    @staticmethod
    def _cash(orders: Any, participants: list[str], trade_cash_eur: np.ndarray,
              statement_eur: dict[tuple[str, int], float]) -> np.ndarray:
        """Money per order from the server's statements [EUR]: each order's money from its
        trades (in the ledger's units), with the rest of its participant's statement of the
        session (the rounding to Wh and m€/kWh) shared in proportion to it, so that the orders of
        a participant in a session add up to its statement."""
        cash = np.array(trade_cash_eur, dtype=float)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, who in enumerate(participants):
            groups[(who, int(orders.interval[i]))].append(i)
        for key, members in groups.items():
            rest = statement_eur.get(key, 0.0) - cash[members].sum()
            weights = np.abs(cash[members])
            if weights.sum() > 0:
                cash[members] += rest * weights / weights.sum()
            else:
                cash[members] += rest / len(members)
        return cash


@contextlib.contextmanager
def in_process_server(db_url: str | None = None) -> Iterator[tuple[Any, Ed25519PrivateKey,
                                                                   SimulatedClock]]:
    """A market server in this process on a simulated clock: its transport, the operator's key
    and the clock. The database is a temporary SQLite file unless ``db_url`` is given."""
    import tempfile

    from fastapi.testclient import TestClient

    from lemgrid.service.app import create_app

    clock = SimulatedClock()
    key = generate_key()
    with tempfile.TemporaryDirectory(prefix="lemgrid-via-server-") as tmp:
        app = create_app(db_url or f"sqlite:///{tmp}/market.db", key, clock_ms=clock)
        with TestClient(app) as http:
            yield http, key, clock
        app.state.market.close()


#: What :func:`clearing_through` routes through the server: the lab's order clearing
#: (:func:`lemgrid.market.clear` for the day-ahead sessions, :func:`lemgrid.market.clear_uniform`
#: for the intraday ones) and the community manager's
#: (:func:`lemgrid.sim.designs.clear_community`), as (module, attribute).
_ROUTED: dict[str, tuple[Any, str]] = {}


def _routed() -> dict[str, tuple[Any, str]]:
    import lemgrid.market
    import lemgrid.sim.designs

    if not _ROUTED:
        _ROUTED.update({"clear": (lemgrid.market, "clear"),
                        "clear_uniform": (lemgrid.market, "clear_uniform"),
                        "clear_community": (lemgrid.sim.designs, "clear_community")})
    return _ROUTED


@contextlib.contextmanager
def clearing_through(clearing: ServerClearing) -> Iterator[ServerClearing]:
    """Route the lab's clearing (:data:`_ROUTED`) through ``clearing`` while the block runs
    (not thread-safe: one simulation at a time in a process)."""
    routed = _routed()
    clearing.lab = {where: getattr(module, name) for where, (module, name) in routed.items()}
    for where, (module, name) in routed.items():
        setattr(module, name, getattr(clearing, where))
    try:
        yield clearing
    finally:
        for where, function in clearing.lab.items():
            setattr(*routed[where], function)
        clearing.lab = {}


def simulate_via_server(scenario: Any, design: str | None = None, *, url: str | None = None,
                        operator_key: Ed25519PrivateKey | None = None, progress: Any = None
                        ) -> tuple[Any, ServerClearing]:
    """``simulate`` with the agents trading through a market server.

    Parameters
    ----------
    scenario : Scenario
    design : str, optional
        Default: the scenario's ``market.design``; must be order-based.
    url : str, optional
        A running server (``lemgrid serve``); default: one in this process on loopback.
    operator_key : Ed25519PrivateKey, optional
        The server's operator key (needed with ``url``: it approves the agents' keys, opens the
        sessions and closes their gates).

    Returns
    -------
    result : SimulationResult
    clearing : ServerClearing
        With the number of requests sent.
    """
    import httpx

    from lemgrid.sim.runner import resolve_design, simulate

    name = resolve_design(scenario, design)
    if name not in (*MECHANISMS, "community"):
        raise NotBuiltError(f"--via-server: design {name!r} is not cleared by the market server "
                            f"(order-based designs {', '.join(MECHANISMS)} and community); run "
                            "it in-process without --via-server")
    if url is None:
        with in_process_server() as (http, key, clock):
            clearing = ServerClearing(http, key, clock)
            with clearing_through(clearing):
                return simulate(scenario, name, progress=progress), clearing
    if operator_key is None:
        raise InputError("--operator-key: needed with --via-server URL (the operator approves "
                         "the agents' keys, opens the sessions and closes their gates)")
    with httpx.Client(base_url=url, timeout=60) as http:
        clearing = ServerClearing(http, operator_key, WallClock(), gate_margin_ms=30_000)
        with clearing_through(clearing):
            return simulate(scenario, name, progress=progress), clearing
