"""UMEI's resources on lemgrid's flexibility market (:mod:`lemgrid.service.grid`).

Nothing here clears, prices or settles: a sell order becomes the DSO's flexibility offer
(:meth:`Grid.accept_offer`, the same checks as a signed ``/grid/offers`` post), a grid operator's
buy order its flexibility request, the DSO's day clearing makes the activations, and trades are
those activations. What this module keeps is UMEI's view of them: which portfolio and period
an order names, the FSPs' baselines and meter readings, and the ``umei-request`` ledger record
of every accepted write.

* Portfolio: one flexible resource (an asset kind and index behind a participant's meter) that the
  DSO's scenario gives room to move; id ``<kind>-<asset>``, grid node = the meter's bus.
* Market: the scenario's flexibility product (``dso.flexibility.lead_time``).
* Flexibility zone: an interval the traffic light marks amber (or red); id ``fz-<interval>``.
* Order: a sell order is one offer (one interval, one direction; one price point, or an
  interpolated order's price curve: :attr:`lemgrid.dso.flexibility.FlexOffers.price_curve`);
  a buy order is one explicit request of a grid operator (:meth:`Grid.submit_request`: the most
  it buys and pays, from its grid node or every bus): the TSO's cleared with the DSO's day by
  the coordination scheme, the DSO's a planned product in its own market (beside the need the
  AC traffic light finds).
* Trade: one activation of the DSO's clearing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lemgrid.errors import InputError
from lemgrid.service import grid as g
from lemgrid.service import tables as t
from lemgrid.service.umei import models as m
from lemgrid.service.umei import tables as u
from lemgrid.service.umei.problems import Problem
from lemgrid.service.umei.units import Calendar, meur_per_kwh, quantity_mw, watts

if TYPE_CHECKING:
    from lemgrid.service.grid import Grid
    from lemgrid.service.operator import Market

FSP_ROLES = ("participant", "aggregator")
#: What a measured move may fall short of an activation before it counts [W]: a baseline and a
#: reading each rounded to UMEI's 0.001 MW.
READING_TOLERANCE_W = 1000
GRID_ROLES = ("operator", "dso", "tso")
DIRECTION = {"Up": "up", "Down": "down"}
REGULATION = {v: k for k, v in DIRECTION.items()}


class Umei:
    """UMEI's view of one market with a DSO.

    Parameters
    ----------
    market : Market
        The operator (identities, ledger, database).
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self._calendar: Calendar | None = None
        self._portfolios: dict[str, dict] | None = None
        self._portfolio_days = 0  # days whose resources self._portfolios holds
        if market.grid is not None:  # the DSO settles delivery on UMEI's meter readings
            market.grid.measurements.append(self.measured_moves)

    # -- the scenario's grid side ----------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        if self.market.grid is None:
            raise Problem("EndpointNotSupported", "this market has no DSO (its scenario has no "
                          "dso block): lemgrid serves UMEI on a DSO's flexibility market only")
        return self.market.grid

    def day(self):
        return self.grid.day(0)

    @property
    def calendar(self) -> Calendar:
        if self._calendar is None:
            day = self.day()
            self._calendar = Calendar(list(day.scenario.time_index.to_pydatetime()),
                                      float(day.scenario.dt_h))
        return self._calendar

    def market_id(self) -> str:
        return f"flex-{self.day().scenario.config.dso.flexibility.lead_time}"

    def capacity_market_id(self) -> str | None:
        """The long-term product's capacity market (None if the DSO buys no long-term)."""
        if self.day().scenario.config.dso.flexibility.lead_time != "long-term":
            return None
        return f"{self.market_id()}-capacity"

    def markets(self) -> list[m.Market]:
        day = self.day()
        flex = day.scenario.config.dso.flexibility
        step = f"{day.scenario.dt_h * 60:g}-min interval"
        capacity = self.capacity_market_id()
        markets = [m.Market(
            id=self.market_id(), name=f"{day.scenario.config.name}: DSO flexibility "
                                      f"({flex.lead_time})",
            description=f"The DSO buys active power up or down per {step} where its AC traffic "
                        f"light is amber; cleared {flex.clearing}, priced {flex.pricing}." + (
                            f" Each order calls a capacity order of {capacity} (its "
                            "longflexContractId)." if capacity is not None else ""))]
        if capacity is not None:
            window = flex.reservation
            assert window is not None  # long-term has a reservation window
            markets.append(m.Market(
                id=capacity, name=f"{day.scenario.config.name}: DSO flexibility reserved "
                                  f"{window.start}-{window.end} (long-term)",
                description=f"The DSO reserves the capacity offered up or down per {step} of "
                            f"its daily window {window.start}-{window.end} (local time) and "
                            "pays its availability (unit price EUR per MW and hour), used or "
                            f"not; it activates what is reserved in {self.market_id()}.",
                quantity_type="Capacity"))
        return markets

    def period(self, interval: int) -> dict:
        start, stop = self.calendar.period(interval)
        return {"period_from": start, "period_to": stop}

    # -- portfolios ------------------------------------------------------------------------------
    def day_rooms(self) -> list[dict]:
        """What each resource can offer in every day the DSO has validated so far (the days
        cleared and the one after them), in calendar order."""
        from lemgrid.service.operator import Refused

        rooms = []
        for start, _stop in self.grid.calendar().bounds:
            try:
                rooms.append(self.grid.room(start))
            except Refused:  # a day whose days before it are not cleared yet
                break
        return rooms

    def all_portfolios(self) -> dict[str, dict]:
        """Every resource with room to move in a day the DSO has validated: id -> kind, asset,
        owner meter, grid node and the organisation that may sell it."""
        rooms = self.day_rooms()
        if self._portfolios is None or self._portfolio_days != len(rooms):
            day = self.day()
            parts = day.scenario.participants
            names = day.operator().network.bus_names
            position = {str(p): i for i, p in enumerate(parts.ids)}
            out: dict[str, dict] = {}
            for room in rooms:
                for (kind, asset, _interval, _direction), (_kw, _b, owner) in sorted(
                        room.items()):
                    pid = f"{kind}-{asset}"
                    if pid not in out:
                        out[pid] = {"id": pid, "kind": kind, "asset": asset, "meter": owner,
                                    "grid_node_id": str(names[int(parts.bus[position[owner]])])}
            self._portfolios, self._portfolio_days = out, len(rooms)
        return self._portfolios

    def _meters_of(self, identity: dict) -> set[str]:
        """Meters whose resources the identity may offer (as :meth:`Grid.accept_offer`)."""
        if identity["role"] == "aggregator":
            members = self.market.members_of(identity) - {identity["participant"]}
            with self.market.engine.connect() as conn:
                return set(conn.execute(sa.select(t.identities.c.meter).where(
                    t.identities.c.participant.in_(members))).scalars())
        return {identity["meter"]}

    def _organisations(self) -> dict[str, str]:
        """Meter -> the FSP selling for it (its registered aggregator, else its owner)."""
        with self.market.engine.connect() as conn:
            rows = list(conn.execute(sa.select(t.identities).where(t.identities.c.approved)))
        by_participant = {r.participant: r.meter for r in rows}
        out = {r.meter: r.participant for r in rows if r.role == "participant"}
        for r in rows:
            if r.role == "aggregator":
                members = self.market.members_of(dict(r._mapping)) - {r.participant}
                for p in members:
                    if p in by_participant:
                        out[by_participant[p]] = r.participant
        return out

    def portfolios(self, identity: dict) -> list[m.Portfolio]:
        """An FSP's own portfolios; all for the DSO, the TSO and the operator."""
        everything = self.all_portfolios()
        orgs = self._organisations()
        if identity["role"] in FSP_ROLES:
            meters = self._meters_of(identity)
            chosen = [p for p in everything.values() if p["meter"] in meters]
        else:
            chosen = list(everything.values())
        return [m.Portfolio(id=p["id"], name=f"{p['kind']} {p['asset']} at {p['meter']}",
                            grid_node_id=p["grid_node_id"],
                            owner_organization_id=(identity["participant"]
                                                   if identity["role"] in FSP_ROLES
                                                   else orgs.get(p["meter"], p["meter"])))
                for p in chosen]

    def portfolio(self, identity: dict, portfolio_id: str, field: str = "id") -> dict:
        """A portfolio the identity may use (``InvalidPortfolio`` if unknown, ``Forbidden`` if
        another FSP's)."""
        p = self.all_portfolios().get(portfolio_id)
        if p is None and field == "id":
            raise Problem("ResourceNotFound", f"id: no portfolio {portfolio_id!r}", "id",
                          portfolio_id)
        if p is None:
            raise Problem("InvalidPortfolio", f"{field}: {portfolio_id!r} is not a portfolio of "
                          "this market (see GET /umei/Portfolios)", field, portfolio_id)
        if identity["role"] in FSP_ROLES and p["meter"] not in self._meters_of(identity):
            raise Problem("Forbidden", f"{field}: portfolio {portfolio_id!r} is not yours",
                          field, portfolio_id)
        return p

    # -- flexibility zones -----------------------------------------------------------------------
    def zones(self, identity: dict) -> list[m.FlexibilityZone]:
        """The traffic light's amber (and red) intervals, with the portfolios that can help."""
        lights = [x for x in self.grid.lights() if x["state"] != "green"]
        room = {key: value for day in (self.day_rooms() if lights else []) for key, value
                in day.items()}
        mine = ({p.id for p in self.portfolios(identity)} if identity["role"] in FSP_ROLES
                else set(self.all_portfolios()))
        out = []
        for x in lights:
            helping = sorted({f"{k}-{a}" for (k, a, i, _d) in room if i == x["interval"]} & mine)
            out.append(m.FlexibilityZone(id=f"fz-{x['interval']}", portfolio_ids=helping,
                                         **self.period(x["interval"])))
        return out

    def zone_interval(self, zone_id: str, field: str = "flexibilityZoneId") -> int:
        lights = {f"fz-{x['interval']}": x for x in self.grid.lights() if x["state"] != "green"}
        if zone_id not in lights:
            raise Problem("InvalidFlexibilityZone", f"{field}: {zone_id!r} is not a flexibility "
                          "zone of this market (see GET /umei/FlexibilityZones)", field, zone_id)
        return int(lights[zone_id]["interval"])

    # -- the ledger ------------------------------------------------------------------------------
    @staticmethod
    def attestation(who: dict, tid: str, method: str, path: str, body: bytes, resource: str,
                    resource_id: str) -> dict:
        """The ``umei-request`` record of an accepted write."""
        return {"kind": "umei-request", "token_id": tid, "participant": who["participant"],
                "method": method, "path": path[:200],
                "body_sha256": hashlib.sha256(body).hexdigest(), "resource": resource,
                "resource_id": resource_id}

    # -- orders ----------------------------------------------------------------------------------
    def create_order(self, who: dict, tid: str, path: str, body: bytes, o: m.OrderIn) -> dict:
        """A sell order as the DSO's flexibility offer, a grid operator's buy order as its
        flexibility request (see module doc)."""
        if o.side == "Buy":
            return self._create_buy_order(who, tid, path, body, o)
        if who["role"] not in FSP_ROLES:
            raise Problem("Forbidden", f"side: a {who['role']} does not sell flexibility",
                          "side", o.side)
        market_id, capacity = self.market_id(), self.capacity_market_id()
        if o.market_id is not None and o.market_id not in (market_id, capacity):
            raise Problem("InvalidMarket", f"marketId: {o.market_id!r} is not a market here "
                          f"(its markets are {', '.join(filter(None, (market_id, capacity)))})",
                          "marketId", o.market_id)
        if o.portfolio_id is None:
            raise Problem("InvalidOrder", "portfolioId: required for sell orders",
                          "portfolioId")
        p = self.portfolio(who, o.portfolio_id, "portfolioId")
        if o.grid_node_id is not None and o.grid_node_id != p["grid_node_id"]:
            raise Problem("InvalidGridNode", f"gridNodeId: portfolio {p['id']!r} is at grid "
                          f"node {p['grid_node_id']!r}, not {o.grid_node_id!r}", "gridNodeId",
                          o.grid_node_id)
        interval = self.calendar.interval(o.period_from, o.period_to)
        if o.flexibility_zone_id is not None and self.zone_interval(
                o.flexibility_zone_id) != interval:
            raise Problem("InconsistentPeriods", f"periodFrom: the order's period is not that of "
                          f"flexibility zone {o.flexibility_zone_id!r}", "periodFrom",
                          o.period_from.isoformat())
        direction, points = _direction_and_points(o)
        if o.market_id is not None and o.market_id == capacity:
            return self._create_capacity_order(who, tid, path, body, o, p, interval, direction)
        last = len(points) - 1
        minimum = o.minimum_acceptance_quantity or 0.0
        if not 0 <= minimum <= points[last].quantity:
            raise Problem("InvalidOrder", "minimumAcceptanceQuantity: must be between 0 and the "
                          "order's quantity [MW]", "minimumAcceptanceQuantity", minimum)
        contract = self._contract(who, o, p, interval, direction, capacity)
        # status and completionType are the platform's: ignored in a body, as UMEI's clients
        # may send the whole resource back
        if o.owner_organization_id not in (None, who["participant"]):
            raise Problem("Forbidden", f"ownerOrganizationId: {o.owner_organization_id!r} is not "
                          "you", "ownerOrganizationId", o.owner_organization_id)
        power_w = watts(points[last].quantity, f"pricePoints[{last}].quantity")
        price = meur_per_kwh(points[0].unit_price, "pricePoints[0].unitPrice")
        order_id = _order_id(o, body, tid)
        offer_id = f"umei:{order_id}"
        payload = {"log_id": self.market.log_id, "offer_id": offer_id,
                   "participant": who["participant"], "meter": p["meter"],
                   "interval": interval, "resource": p["kind"], "kind": p["kind"],
                   "asset": p["asset"], "direction": direction,
                   "power_w": power_w, "price_meur_per_kwh": price}
        min_power_w = watts(minimum, "minimumAcceptanceQuantity")
        if min_power_w:
            payload["min_power_w"] = min_power_w
        if contract is not None:
            if power_w > contract["power_w"]:
                raise Problem("InvalidOrder", f"pricePoints[{last}].quantity: more than the "
                              f"{contract['power_w'] / 1e6:g} MW its capacity order "
                              f"{contract['order_id']!r} reserves", f"pricePoints[{last}].quantity",
                              points[last].quantity)
            if contract["price_meur_per_kwh"] > 0:
                payload["availability_meur_per_kw_h"] = contract["price_meur_per_kwh"]
        if last:  # an interpolated order: the offer's price curve
            payload["price_points"] = [
                [watts(x.quantity, f"pricePoints[{i}].quantity"),
                 meur_per_kwh(x.unit_price, f"pricePoints[{i}].unitPrice")]
                for i, x in enumerate(points)]

        def append(conn: sa.engine.Connection, tx: Any) -> int:
            _refuse_taken(conn, order_id)
            if contract is not None and conn.execute(sa.select(u.orders.c.order_id).where(
                    u.orders.c.longflex_contract_id == contract["order_id"])).first() is not None:
                raise Problem("Conflict", f"longflexContractId: capacity order "
                              f"{contract['order_id']!r} is called by another order already",
                              "longflexContractId", contract["order_id"])
            seq = tx.append_operator([self.attestation(who, tid, "POST", path, body, "Order",
                                                       order_id)]).first_seq
            conn.execute(u.orders.insert().values(
                order_id=order_id, offer_id=offer_id, owner=who["participant"],
                portfolio_id=p["id"], grid_node_id=p["grid_node_id"], market_id=market_id,
                interval=interval, direction=payload["direction"], power_w=power_w,
                price_meur_per_kwh=price, seq=seq,
                longflex_contract_id=None if contract is None else contract["order_id"]))
            return seq

        from lemgrid.service.operator import Refused

        try:
            self.grid.accept_offer(who, payload, append)
        except Refused as exc:
            raise _as_problem(exc) from None
        return self.order(who, order_id)

    def _create_capacity_order(self, who: dict, tid: str, path: str, body: bytes,
                               o: m.OrderIn, p: dict, interval: int, direction: str) -> dict:
        """A sell order of the long-term capacity market: the capacity a portfolio offers the
        DSO up or down in one period of the reservation window, at an availability price; the
        DSO reserves it once an order of the activation market calls it (its
        ``longflexContractId``) with the activation price."""
        for name, value in (("minimumAcceptanceQuantity", o.minimum_acceptance_quantity),
                            ("longflexContractId", o.longflex_contract_id)):
            if value not in (None, 0):
                raise Problem("InvalidOrder", f"{name}: a capacity order is the long-flex "
                              "contract itself, reserved whole", name, value)
        points = o.price_points or []
        if len(points) > 1:
            raise Problem("InvalidOrder", "pricePoints[1]: a capacity order has one price point "
                          "(its availability price for its quantity)", "pricePoints[1]")
        if points[0].unit_price < 0:
            raise Problem("InvalidOrder", "pricePoints[0].unitPrice: an availability price may "
                          "not be negative [EUR/MW/h]", "pricePoints[0].unitPrice",
                          points[0].unit_price)
        from lemgrid.service.operator import Refused

        with self.market.engine.connect() as conn:
            stage = conn.execute(sa.select(g.lights.c.stage).where(
                g.lights.c.interval == interval)).scalar()
        if stage is None:
            raise Problem("InvalidOrder", "periodFrom: the DSO has not validated this period "
                          "yet (its session is not cleared)", "periodFrom",
                          o.period_from.isoformat())
        if stage != "forecast":
            raise Problem("Conflict", "periodFrom: the DSO has cleared this period's day",
                          "periodFrom", o.period_from.isoformat())
        try:
            reserved = self.grid.day(interval).reserves(interval)
        except Refused as exc:
            raise _as_problem(exc) from None
        if not reserved:
            flex = self.day().scenario.config.dso.flexibility
            assert flex.reservation is not None  # long-term (a capacity market) has a window
            raise Problem("InvalidOrder", f"periodFrom: outside the day's reservation window "
                          f"{flex.reservation.start}-{flex.reservation.end} (local time)",
                          "periodFrom", o.period_from.isoformat())
        power_w = watts(points[0].quantity, "pricePoints[0].quantity")
        price = meur_per_kwh(points[0].unit_price, "pricePoints[0].unitPrice")
        order_id = _order_id(o, body, tid)
        market_id = self.capacity_market_id()  # (read before the write: it reads the days)
        with self.market.write() as (conn, tx):
            _refuse_taken(conn, order_id)
            seq = tx.append_operator([self.attestation(who, tid, "POST", path, body, "Order",
                                                       order_id)]).first_seq
            conn.execute(u.orders.insert().values(
                order_id=order_id, offer_id=f"capacity:{order_id}", owner=who["participant"],
                portfolio_id=p["id"], grid_node_id=p["grid_node_id"],
                market_id=market_id, interval=interval, direction=direction,
                power_w=power_w, price_meur_per_kwh=price, seq=seq))
        return self.order(who, order_id)

    def _contract(self, who: dict, o: m.OrderIn, p: dict, interval: int, direction: str,
                  capacity: str | None) -> dict | None:
        """The capacity order an order of the long-term activation market calls (None outside
        long-term), checked: the caller's own, of the same portfolio, period and direction."""
        if capacity is None:
            if o.longflex_contract_id is not None:
                raise Problem("InvalidOrder", "longflexContractId: this market's DSO buys no "
                              "long-term products (dso.flexibility.lead_time)",
                              "longflexContractId", o.longflex_contract_id)
            return None
        if o.longflex_contract_id is None:
            raise Problem("InvalidOrder", f"longflexContractId: required: the DSO activates only "
                          f"what it reserved, an order of {capacity} (post that first)",
                          "longflexContractId")
        with self.market.engine.connect() as conn:
            row = conn.execute(sa.select(u.orders).where(
                (u.orders.c.order_id == o.longflex_contract_id)
                & (u.orders.c.market_id == capacity))).first()
        if row is None or row.owner != who["participant"]:
            raise Problem("InvalidOrder", f"longflexContractId: {o.longflex_contract_id!r} is "
                          f"not a capacity order of yours in {capacity}", "longflexContractId",
                          o.longflex_contract_id)
        for name, mine, theirs in (("portfolioId", p["id"], row.portfolio_id),
                                   ("periodFrom", interval, row.interval),
                                   ("regulationType", direction, row.direction)):
            if mine != theirs:
                raise Problem("InconsistentPeriods" if name == "periodFrom" else "InvalidOrder",
                              f"{name}: not that of its capacity order "
                              f"{o.longflex_contract_id!r}", name)
        return dict(row._mapping)

    def _create_buy_order(self, who: dict, tid: str, path: str, body: bytes, o: m.OrderIn
                          ) -> dict:
        """A grid operator's buy order: its flexibility request for one period and direction,
        from its grid node (every bus if none), cleared with the DSO's day (the TSO's by the
        scenario's coordination scheme)."""
        if who["role"] not in ("tso", "dso"):
            raise Problem("InvalidOrder", "side: only the grid operators (DSO, TSO) post buy "
                          "orders; FSPs sell", "side", o.side)
        buyer = who["role"].upper()
        market_id = self.market_id()
        if o.market_id is not None and o.market_id != market_id:
            raise Problem("InvalidMarket", f"marketId: {o.market_id!r} is not a market here "
                          f"(this market is {market_id!r})", "marketId", o.market_id)
        for name, value in (("portfolioId", o.portfolio_id),
                            ("flexibilityZoneId", o.flexibility_zone_id),
                            ("minimumAcceptanceQuantity", o.minimum_acceptance_quantity),
                            ("longflexContractId", o.longflex_contract_id)):
            if value not in (None, 0):
                raise Problem("InvalidOrder", f"{name}: a buy order is served from its grid "
                              "node (every bus if none), any part of it, and has none", name,
                              value)
        if o.grid_node_id is not None:
            try:
                self.grid.calendar().scenario.network.bus_position(o.grid_node_id)
            except InputError:
                raise Problem("InvalidGridNode", f"gridNodeId: {o.grid_node_id!r} is not a bus "
                              "of this market's grid", "gridNodeId", o.grid_node_id) from None
        direction, points = _direction_and_points(o)
        if len(points) > 1:
            raise Problem("InvalidOrder", "pricePoints[1]: a buy order has one price point "
                          "(the most its buyer pays for its quantity): interpolated buy orders "
                          "are not supported", "pricePoints[1]")
        point = points[0]
        if point.unit_price < 0:
            raise Problem("InvalidOrder", f"pricePoints[0].unitPrice: the most the {buyer} pays "
                          "may not be negative", "pricePoints[0].unitPrice", point.unit_price)
        interval = self.calendar.interval(o.period_from, o.period_to)
        order_id = _order_id(o, body, tid)
        with self.market.engine.connect() as conn:
            _refuse_taken(conn, order_id)
        request = {"request_id": order_id, "interval": interval,
                   "direction": direction,
                   "power_w": watts(point.quantity, "pricePoints[0].quantity"),
                   "max_price_meur_per_kwh": meur_per_kwh(point.unit_price,
                                                          "pricePoints[0].unitPrice"),
                   "service": "balancing" if buyer == "TSO" else "CM",
                   **({"buses": [o.grid_node_id]} if o.grid_node_id is not None else {})}
        from lemgrid.service.operator import Refused

        try:
            self.grid.submit_request(who, request, [self.attestation(
                who, tid, "POST", path, body, "Order", order_id)], buyer=buyer)
        except Refused as exc:
            raise _as_problem(exc) from None
        return self.order(who, order_id)

    def _buy_rows(self, where: Any = None) -> list[dict]:
        """The grid operators' requests as buy orders, with their status (Completed once the
        day is cleared: Filled if the buyer bought what it asked for in that period and
        direction, Killed if less, Expired if nothing)."""
        query = sa.select(g.tso_requests).order_by(g.tso_requests.c.seq)
        if where is not None:
            query = query.where(where)
        with self.market.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            cleared = set(conn.execute(sa.select(g.days.c.day_start)).scalars())
            a = g.activations.c
            bought_w = {(r.buyer, r.interval, r.direction): int(r.w) for r in conn.execute(
                sa.select(a.buyer, a.interval, a.direction, sa.func.sum(a.power_w).label("w"))
                .group_by(a.buyer, a.interval, a.direction))}
        market_id = self.market_id() if rows else ""
        out = []
        for r in rows:
            done = r["day_start"] in cleared
            out.append({
                "order_id": r["request_id"], "offer_id": r["request_id"],
                "owner": r["requested_by"], "side": "Buy", "portfolio_id": None,
                "grid_node_id": r["buses"] if r["buses"] and "," not in r["buses"] else None,
                "market_id": market_id, "interval": r["interval"],
                "direction": r["direction"], "power_w": r["power_w"],
                "price_meur_per_kwh": r["max_price_meur_per_kwh"], "seq": r["seq"],
                "min_power_w": 0, "status": "Completed" if done else "Active",
                "completion_type": (_completion(bought_w.get((r["buyer"], r["interval"],
                                                              r["direction"]), 0),
                                                r["power_w"]) if done else None)})
        return out

    def _order_rows(self, where: Any = None) -> list[dict]:
        query = sa.select(u.orders, g.offers.c.min_power_w, g.offers.c.price_points).outerjoin(
            g.offers, g.offers.c.offer_id == u.orders.c.offer_id).order_by(u.orders.c.seq)
        if where is not None:
            query = query.where(where)
        with self.market.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            cleared = set(conn.execute(sa.select(g.days.c.day_start)).scalars())
            filled_w = dict(conn.execute(sa.select(
                g.activations.c.offer_id, sa.func.sum(g.activations.c.power_w)).where(
                g.activations.c.offer_id.is_not(None)).group_by(g.activations.c.offer_id)).all())
            # a capacity order is reserved (filled) by the offer of the order that calls it
            called = dict(conn.execute(sa.select(u.orders.c.longflex_contract_id,
                                                 u.orders.c.power_w).where(
                u.orders.c.longflex_contract_id.is_not(None))).all())
        calendar = self.grid.calendar() if rows else None
        for r in rows:
            done = calendar is not None and calendar.bounds[
                calendar.index(r["interval"])][0] in cleared
            r["status"] = "Completed" if done else "Active"
            filled = (called.get(r["order_id"], 0) if r["offer_id"].startswith("capacity:")
                      else filled_w.get(r["offer_id"], 0))
            r["completion_type"] = _completion(filled, r["power_w"]) if done else None
        return rows

    def _zone_ids(self) -> set[str]:
        return {f"fz-{x['interval']}" for x in self.grid.lights() if x["state"] != "green"}

    def _order_model(self, r: dict, zone: set[str], public: bool = False) -> m.Order:
        fz = f"fz-{r['interval']}"
        return m.Order(
            id=None if public else r["order_id"],
            owner_organization_id=None if public else r["owner"], status=r["status"],
            completion_type=r["completion_type"],
            grid_node_id=r["grid_node_id"], flexibility_zone_id=fz if fz in zone else None,
            market_id=r["market_id"], portfolio_id=None if public else r["portfolio_id"],
            regulation_type=REGULATION[r["direction"]], side=r.get("side", "Sell"),
            price_points=[m.QuantityPricePoint(quantity=w / 1e6, unit_price=float(price))
                          for w, price in (json.loads(r["price_points"])
                                           if r.get("price_points") else
                                           [(r["power_w"], r["price_meur_per_kwh"])])],
            minimum_acceptance_quantity=(r["min_power_w"] or 0) / 1e6 or None,
            longflex_contract_id=r.get("longflex_contract_id"),
            **self.period(r["interval"]),
            lemgrid=None if public else m.LemgridRecord(
                ledger_seq=r["seq"], interval=r["interval"], offer_id=r["offer_id"],
                power_w=r["power_w"], price_meur_per_kwh=r["price_meur_per_kwh"]))

    def orders(self, who: dict) -> list[m.Order]:
        """An FSP's own (sell) orders; all, with the grid operators' buy orders, for the DSO, the
        TSO and the operator."""
        zone = self._zone_ids()
        if who["role"] in FSP_ROLES:
            rows = self._order_rows(u.orders.c.owner == who["participant"])
        else:
            rows = sorted(self._order_rows() + self._buy_rows(), key=lambda r: r["seq"])
        return [self._order_model(r, zone) for r in rows]

    def order(self, who: dict, order_id: str) -> dict:
        rows = self._order_rows(u.orders.c.order_id == order_id)
        if not rows and who["role"] not in FSP_ROLES:
            rows = self._buy_rows(g.tso_requests.c.request_id == order_id)
        if not rows:
            raise Problem("ResourceNotFound", f"id: no order {order_id!r}", "id", order_id)
        if who["role"] in FSP_ROLES and rows[0]["owner"] != who["participant"]:
            raise Problem("Forbidden", f"id: order {order_id!r} is not yours", "id", order_id)
        return self._order_model(rows[0], self._zone_ids()).model_dump(
            by_alias=True, exclude_none=True, mode="json")

    def public_orders(self) -> list[m.Order]:
        """The anonymised book: every order without its id, owner and portfolio."""
        zone = self._zone_ids()
        rows = sorted(self._order_rows() + self._buy_rows(), key=lambda r: r["seq"])
        return [self._order_model(r, zone, public=True) for r in rows]

    # -- trades ----------------------------------------------------------------------------------
    def trades(self, who: dict) -> list[m.Trade]:
        """The DSO's activations: an FSP's own (side Sell), all for the grid roles (side Buy)."""
        acts = self.grid.activations(who)
        with self.market.engine.connect() as conn:
            by_offer = {r.offer_id: r for r in conn.execute(sa.select(u.orders))}
            offers = {r.offer_id: r for r in conn.execute(sa.select(g.offers))}
            # the buy order an activation fills: its buyer's (the first) of its period and
            # direction
            bought_by = {(r.buyer, r.interval, r.direction): r.request_id for r in conn.execute(
                sa.select(g.tso_requests).order_by(g.tso_requests.c.seq.desc()))}
        dt_h = float(self.day().scenario.dt_h)
        zone = self._zone_ids()
        portfolios = self.all_portfolios()
        out = []
        for a in acts:
            order = by_offer.get(a["offer_id"])
            offer = offers.get(a["offer_id"])
            portfolio = f"{offer.kind}-{offer.asset}" if offer is not None else None
            node = portfolios[portfolio]["grid_node_id"] if portfolio in portfolios else None
            fsp = who["role"] in FSP_ROLES
            buy_order = None if fsp else bought_by.get((a["buyer"], a["interval"],
                                                         a["direction"]))
            energy_kwh = a["power_w"] / 1000 * dt_h
            fz = f"fz-{a['interval']}"
            out.append(m.Trade(
                id=a["activation_id"], owner_organization_id=a["provider"] if fsp else a["buyer"],
                market_id=self.market_id(), order_id=buy_order or (
                    order.order_id if order is not None else a["offer_id"]),
                quantity=quantity_mw(a["power_w"]),
                side="Sell" if fsp else "Buy",
                # the price paid: the activation's money over its energy [EUR/MWh]
                unit_price=(a["utilisation_ueur"] / 1e6 / energy_kwh * 1000 if energy_kwh > 0
                            else float(a["price_meur_per_kwh"])),
                grid_node_id=node, flexibility_zone_id=fz if fz in zone else None,
                portfolio_id=portfolio, regulation_type=REGULATION[a["direction"]],
                **self.period(a["interval"]),
                lemgrid=m.LemgridActivation(
                    activation_id=a["activation_id"], ledger_seq=a["seq"],
                    interval=a["interval"], power_w=a["power_w"],
                    price_meur_per_kwh=a["price_meur_per_kwh"],
                    utilisation_eur=a["utilisation_ueur"] / 1e6,
                    penalty_eur=a["penalty_ueur"] / 1e6, delivered=a["delivered"],
                    buyer=a["buyer"], service=a["service"])))
        return out

    # -- baselines and meter readings ------------------------------------------------------------
    def _series_create(self, table: sa.Table, resource: str, code: str, who: dict, tid: str,
                       path: str, body: bytes, x: m.BaselineIntervalIn | m.MeterReadingIn
                       ) -> dict:
        if who["role"] not in FSP_ROLES:
            raise Problem("Forbidden", f"portfolioId: a {who['role']} has no portfolios",
                          "portfolioId", x.portfolio_id)
        p = self.portfolio(who, x.portfolio_id, "portfolioId")
        interval = self.calendar.interval(x.period_from, x.period_to)
        if x.quantity_type != "ActivePower":
            raise Problem(code, f"quantityType: lemgrid's flexibility market trades "
                          f"ActivePower, not {x.quantity_type}", "quantityType", x.quantity_type)
        p_w = watts(x.quantity, "quantity")
        if p_w % 1000:
            raise Problem(code, f"quantity: {x.quantity} MW is finer than UMEI's resolution of "
                          "0.001 MW", "quantity", x.quantity)
        key = table.c[list(table.c.keys())[0]]
        item_id = x.id or f"{p['id']}@{interval}"
        with self.market.write() as (conn, tx):
            if conn.execute(sa.select(key).where(key == item_id)).first() is not None:
                raise Problem("Conflict", f"id: {resource} {item_id!r} exists already", "id",
                              item_id)
            if conn.execute(sa.select(key).where((table.c.portfolio_id == p["id"])
                                                 & (table.c.interval == interval))
                            ).first() is not None:
                raise Problem("Conflict", f"periodFrom: portfolio {p['id']!r} already has a "
                              f"{resource} for this period", "periodFrom",
                              x.period_from.isoformat())
            seq = tx.append_operator([self.attestation(who, tid, "POST", path, body, resource,
                                                       item_id)]).first_seq
            conn.execute(table.insert().values(**{key.name: item_id}, owner=who["participant"],
                                               portfolio_id=p["id"], interval=interval,
                                               p_w=p_w, seq=seq))
        return self._series_get(table, resource, who, item_id)

    def _delivery(self) -> tuple[dict, dict]:
        """Declared baselines and the DSO's activations [W, net injection] per (portfolio,
        interval)."""
        with self.market.engine.connect() as conn:
            baselines = {(r.portfolio_id, r.interval): r.p_w
                         for r in conn.execute(sa.select(u.baselines))}
            rows = conn.execute(sa.select(g.activations.c.interval, g.activations.c.direction,
                                          g.activations.c.power_w, g.offers.c.kind,
                                          g.offers.c.asset)
                                .join(g.offers, g.offers.c.offer_id == g.activations.c.offer_id))
            activated: dict[tuple[str, int], int] = {}
            for r in rows:
                key = (f"{r.kind}-{r.asset}", r.interval)
                activated[key] = activated.get(key, 0) + (r.power_w if r.direction == "up"
                                                          else -r.power_w)
        return baselines, activated

    def measured_moves(self, start: int, stop: int) -> dict[tuple[str, int, int],
                                                            tuple[int, int]]:
        """What the FSPs' meter readings show each portfolio moved in the intervals [start,
        stop) against its declared baseline [W, up positive], with the tolerance of UMEI's
        0.001 MW resolution on both (:attr:`lemgrid.service.grid.Grid.measurements`)."""
        with self.market.engine.connect() as conn:
            rows = conn.execute(sa.select(u.meter_readings.c.portfolio_id,
                                          u.meter_readings.c.interval, u.meter_readings.c.p_w,
                                          u.baselines.c.p_w.label("baseline_w"))
                                .join(u.baselines, (u.baselines.c.portfolio_id
                                                    == u.meter_readings.c.portfolio_id)
                                      & (u.baselines.c.interval
                                         == u.meter_readings.c.interval))
                                .where((u.meter_readings.c.interval >= start)
                                       & (u.meter_readings.c.interval < stop)))
            out = {}
            for r in rows:
                kind, asset = r.portfolio_id.rsplit("-", 1)
                out[(kind, int(asset), r.interval)] = (r.p_w - r.baseline_w, READING_TOLERANCE_W)
        return out

    def _series_model(self, r: Any, status: str, delivery: tuple[dict, dict] | None = None
                      ) -> m.BaselineInterval:
        model = m.BaselineInterval if delivery is None else m.MeterReading
        extra: dict[str, int] = {}
        if delivery is not None:
            key = (r.portfolio_id, r.interval)
            baseline, activated = delivery[0].get(key), delivery[1].get(key, 0)
            extra["activated_w"] = activated
            if baseline is not None:
                extra["baseline_w"] = baseline
                if activated:
                    sign = 1 if activated > 0 else -1
                    extra["shortfall_w"] = min(abs(activated), max(
                        0, (activated - (r.p_w - baseline)) * sign - READING_TOLERANCE_W))
        return model(id=r[0], status=status, portfolio_id=r.portfolio_id,
                     quantity=quantity_mw(r.p_w), **self.period(r.interval),
                     lemgrid=m.LemgridRecord(ledger_seq=r.seq, interval=r.interval,
                                             power_w=r.p_w, **extra))

    def _series(self, table: sa.Table, who: dict) -> list[m.BaselineInterval]:
        query = sa.select(table).order_by(table.c.seq)
        if who["role"] in FSP_ROLES:
            query = query.where(table.c.owner == who["participant"])
        with self.market.engine.connect() as conn:
            rows = list(conn.execute(query))
        if table is u.baselines:
            return [self._series_model(r, "Active") for r in rows]
        delivery = self._delivery()
        return [self._series_model(r, "Received", delivery) for r in rows]

    def _series_get(self, table: sa.Table, resource: str, who: dict, item_id: str) -> dict:
        key = table.c[list(table.c.keys())[0]]
        with self.market.engine.connect() as conn:
            r = conn.execute(sa.select(table).where(key == item_id)).first()
        if r is None:
            raise Problem("ResourceNotFound", f"id: no {resource} {item_id!r}", "id", item_id)
        if who["role"] in FSP_ROLES and r.owner != who["participant"]:
            raise Problem("Forbidden", f"id: {resource} {item_id!r} is not yours", "id",
                          item_id)
        x = (self._series_model(r, "Active") if table is u.baselines
             else self._series_model(r, "Received", self._delivery()))
        return x.model_dump(by_alias=True, exclude_none=True, mode="json")

    def create_baseline(self, who: dict, tid: str, path: str, body: bytes,
                        x: m.BaselineIntervalIn) -> dict:
        return self._series_create(u.baselines, "BaselineInterval", "InvalidBaseline", who, tid,
                                   path, body, x)

    def baselines(self, who: dict) -> list[m.BaselineInterval]:
        return self._series(u.baselines, who)

    def baseline(self, who: dict, item_id: str) -> dict:
        return self._series_get(u.baselines, "BaselineInterval", who, item_id)

    def create_reading(self, who: dict, tid: str, path: str, body: bytes,
                       x: m.MeterReadingIn) -> dict:
        return self._series_create(u.meter_readings, "MeterReading", "InvalidMeterReading", who,
                                   tid, path, body, x)

    def readings(self, who: dict) -> list[m.BaselineInterval]:
        return self._series(u.meter_readings, who)

    def reading(self, who: dict, item_id: str) -> dict:
        return self._series_get(u.meter_readings, "MeterReading", who, item_id)


def _order_id(o: m.OrderIn, body: bytes, tid: str) -> str:
    """An order's id: its own, else one derived from its body and the caller's token."""
    return o.id or f"o-{hashlib.sha256(body + tid.encode()).hexdigest()[:24]}"


def _refuse_taken(conn: sa.engine.Connection, order_id: str) -> None:
    """Refuse an order id that is taken (``Conflict`` naming ``id``)."""
    if conn.execute(sa.select(u.orders.c.order_id).where(
            u.orders.c.order_id == order_id)).first() is not None:
        raise Problem("Conflict", f"id: order {order_id!r} exists already", "id", order_id)


def _completion(activated_w: int, power_w: int) -> str:
    """How a cleared order completed: ``Filled`` whole (to the W of each activation's
    rounding), ``Killed`` in part (the DSO's clearing took part of it and the rest ended with
    the day: fill-and-kill), ``Expired`` not at all."""
    if activated_w <= 0:
        return "Expired"
    return "Filled" if activated_w >= power_w - 2 else "Killed"


def _direction_and_points(o: m.OrderIn) -> tuple[str, list[m.QuantityPricePoint]]:
    """An order's direction ('up'/'down') and its quantity-price points: one (a fixed price
    for up to its quantity) or, interpolated, a marginal price linear between points from
    quantity 0 on (UMEI's rule), quantities rising and, for a sell order, prices not falling
    (the DSO's clearing minimises a convex cost)."""
    if o.regulation_type is None:
        raise Problem("InvalidOrder", "regulationType: required (Up or Down)", "regulationType")
    points = o.price_points or []
    if not points:
        raise Problem("InvalidOrder", "pricePoints: a quantity-price point is required",
                      "pricePoints")
    if len(points) == 1 and points[0].quantity <= 0:
        raise Problem("InvalidOrder", "pricePoints[0].quantity: must be positive [MW]",
                      "pricePoints[0].quantity", points[0].quantity)
    if len(points) > 1:
        if points[0].quantity != 0:
            raise Problem("InvalidOrder", "pricePoints[0].quantity: an interpolated order's "
                          "first quantity must be 0 [MW]", "pricePoints[0].quantity",
                          points[0].quantity)
        for i in range(1, len(points)):
            if points[i].quantity <= points[i - 1].quantity:
                raise Problem("InvalidOrder", f"pricePoints[{i}].quantity: must be more than "
                              "the point before's [MW]", f"pricePoints[{i}].quantity",
                              points[i].quantity)
            if o.side == "Sell" and points[i].unit_price < points[i - 1].unit_price:
                raise Problem("InvalidOrder", f"pricePoints[{i}].unitPrice: a sell order's "
                              "price may not fall as its quantity rises (a cost that is not "
                              "convex cannot be cleared at least cost)",
                              f"pricePoints[{i}].unitPrice", points[i].unit_price)
    return DIRECTION[o.regulation_type], list(points)


def _as_problem(exc: Any) -> Problem:
    """A refusal of the grid's offer checks as a UMEI problem naming the UMEI field."""
    detail = str(exc.detail)
    field = detail.split(":", 1)[0].removeprefix("payload.")
    if field.startswith("price_points"):
        field = field.replace("price_points", "pricePoints", 1)
    umei_field = {"interval": "periodFrom", "power_w": "pricePoints[0].quantity",
                  "min_power_w": "minimumAcceptanceQuantity",
                  "asset": "portfolioId", "meter": "portfolioId", "participant": "portfolioId",
                  "offer_id": "id", "request_id": "id",
                  "max_price_meur_per_kwh": "pricePoints[0].unitPrice"}.get(field, field)
    code = {403: "Forbidden", 409: "Conflict", 404: "ResourceNotFound"}.get(
        exc.status, "InvalidOrder")
    if field == "interval" and exc.status == 422:
        code = "InvalidFlexibilityZone"
    return Problem(code, f"{umei_field}: {detail.split(':', 1)[-1].strip()}", umei_field)


def page(items: Iterable, take: int | None, skip: int | None) -> tuple[list, int]:
    everything = list(items)
    start = skip or 0
    return everything[start:start + (take if take is not None else 1000)], len(everything)
