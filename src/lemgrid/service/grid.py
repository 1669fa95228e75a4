"""The DSO in the market server: AC validation of each cleared session, the traffic light,
flexibility requests, signed offers and the DSO's activations, by the lab's code
(:mod:`lemgrid.service.engine` -> :mod:`lemgrid.dso`).

A session's life on the grid side (``docs/service.md``):

1. After a session clears, the day's schedules are checked with AC power flow on the scenario's
   grid (the DSO's forecast view, as ``lemgrid simulate``); the session's interval gets a
   traffic light, stored with its ``traffic-light`` ledger record and published (SSE
   ``traffic-light``). An amber interval is a flexibility request (SSE ``flex-request``).
2. Participants and aggregators post signed ``flex-offer`` records for amber intervals, for a
   resource behind their own (or a member's) meter, within what the resource can do.
3. The DSO (or the operator) clears the day: the lab's flexibility market on the posted offers,
   AC re-checks, delivery and red; each activation is stored in the same transaction as its
   ``flex-activation`` record, the final lights with theirs, and a checkpoint signed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import sqlalchemy as sa

from lemgrid.errors import InputError
from lemgrid.ledger.records import SignedRecord
from lemgrid.service import engine as lab
from lemgrid.service import tables as t

if TYPE_CHECKING:
    from lemgrid.service.operator import Market

#: The grid tables (their own metadata: created by migration 0002 beside the first schema).
METADATA = sa.MetaData()

lights = sa.Table(
    "grid_lights", METADATA,
    sa.Column("interval", sa.Integer, primary_key=True),
    sa.Column("market_id", sa.String(200), nullable=False),
    sa.Column("day_start", sa.Integer, nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # green, amber, red
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("service", sa.String(20), nullable=False),  # what an amber interval needs
    sa.Column("stage", sa.String(12), nullable=False),  # forecast -> cleared
    sa.Column("seq", sa.BigInteger, nullable=False))

days = sa.Table(
    "grid_days", METADATA,
    sa.Column("day_start", sa.Integer, primary_key=True),
    sa.Column("checkpoint_seq", sa.BigInteger, nullable=False),
    # the checkpoint of its measured delivery; None: not settled (revision 0014)
    sa.Column("delivery_seq", sa.BigInteger, nullable=True))

offers = sa.Table(
    "flex_offers", METADATA,
    sa.Column("offer_id", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("participant", sa.String(200), nullable=False),  # owner of the resource (meter)
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("asset", sa.Integer, nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("day_start", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),
    sa.Column("power_w", sa.BigInteger, nullable=False),
    sa.Column("price_meur_per_kwh", sa.BigInteger, nullable=False),
    sa.Column("baseline_w", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # minimum acceptance quantity [W], 0: any part (revision 0009)
    sa.Column("min_power_w", sa.BigInteger, nullable=False, server_default="0"),
    # the price curve, JSON [[W, m€/kWh], ...]; "": one price (revision 0013)
    sa.Column("price_points", sa.Text, nullable=False, server_default=""),
    # a long-term product's availability price [m€ per kW and hour reserved] (revision 0015)
    sa.Column("availability_meur_per_kw_h", sa.BigInteger, nullable=False,
              server_default="0"))

activations = sa.Table(
    "flex_activations", METADATA,
    sa.Column("activation_id", sa.String(200), primary_key=True),
    sa.Column("offer_id", sa.String(200), nullable=True),  # None: direct control (red)
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("participant", sa.String(200), nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),
    sa.Column("power_w", sa.BigInteger, nullable=False),
    sa.Column("price_meur_per_kwh", sa.BigInteger, nullable=False),
    sa.Column("buyer", sa.String(20), nullable=False),
    sa.Column("service", sa.String(20), nullable=False),
    sa.Column("delivered", sa.Boolean, nullable=False),
    sa.Column("utilisation_ueur", sa.BigInteger, nullable=False),
    sa.Column("penalty_ueur", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False))

#: The DSO's long-term reservations (revision 0015): per provider and owner of the resources, the
#: availability it is paid for a day's reservation window [window_start, window_stop).
reservations = sa.Table(
    "flex_reservations", METADATA,
    sa.Column("reservation_id", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("participant", sa.String(200), nullable=False),
    sa.Column("day_start", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Integer, nullable=False),
    sa.Column("window_stop", sa.Integer, nullable=False),
    sa.Column("availability_ueur", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False))


#: The grid operators' explicit requests: the TSO's, and (buyer 'DSO', revision 0012) the DSO's
#: planned products (its UMEI buy orders), cleared with the DSO's day.
tso_requests = sa.Table(
    "tso_requests", METADATA,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("day_start", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),
    sa.Column("power_w", sa.BigInteger, nullable=False),
    sa.Column("max_price_meur_per_kwh", sa.BigInteger, nullable=False),
    sa.Column("service", sa.String(20), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # the buses the request may be served from, comma-separated; "" = every bus (revision 0010)
    sa.Column("buses", sa.Text, nullable=False, server_default=""),
    sa.Column("buyer", sa.String(8), nullable=False, server_default="TSO"))  # or DSO (0012)


class Grid:
    """The DSO's side of one market (attached to a :class:`~lemgrid.service.operator.Market`
    whose scenario has a ``dso:`` block).

    The days are the lab's (:class:`lemgrid.service.engine.GridCalendar`): each starts where
    the DSO's clearing of the day before left the batteries, so a day is validated only once
    the days before it are cleared. The calendar lives in memory; after a restart (or a failed
    clearing) it is rebuilt by clearing the stored days again on their stored offers and TSO
    requests (deterministic: the same activations).
    """

    def __init__(self, market: Market, scenario_path: str) -> None:
        self.market = market
        self.scenario_path = scenario_path
        self._calendar: lab.GridCalendar | None = None
        self._forecast: dict[int, list[dict]] = {}
        self._room: dict[int, dict] = {}
        self._compute = threading.RLock()
        #: Where measured delivery comes from: each source maps the horizon intervals
        #: [start, stop) to {(kind, asset, interval): (moved W, tolerance W)}, the measured net
        #: injection of a resource minus its baseline (e.g. UMEI's meter readings).
        self.measurements: list[Callable[[int, int], dict[tuple[str, int, int],
                                                          tuple[int, int]]]] = []

    # -- the lab's days, in calendar order -----------------------------------------------------
    def calendar(self) -> lab.GridCalendar:
        from lemgrid.errors import NotBuiltError
        from lemgrid.service.operator import Refused

        with self._compute:
            if self._calendar is None:
                try:
                    self._calendar = lab.GridCalendar(self.scenario_path)
                except (InputError, NotBuiltError) as exc:
                    raise Refused(422, str(exc)) from None
            return self._calendar

    def _forget(self) -> None:
        """Drop the calendar (rebuilt from the stored days on next use)."""
        self._calendar = None
        self._forecast.clear()
        self._room.clear()

    def day(self, interval: int) -> lab.GridDay:
        """The day containing ``interval``, the days before it cleared (from the database
        after a restart).

        Raises
        ------
        Refused
            422 outside the horizon; 409 if a day before it is not cleared yet.
        """
        from lemgrid.service.operator import Refused

        with self._compute:
            calendar = self.calendar()
            try:
                k = calendar.index(interval)
            except InputError as exc:
                raise Refused(422, str(exc)) from None
            with self.market.engine.connect() as conn:
                stored = set(conn.execute(sa.select(days.c.day_start)).scalars())
            while len(calendar.cleared) < k:  # stored days not in memory (a restart)
                j = len(calendar.cleared)
                start = calendar.bounds[j][0]
                if start not in stored:
                    break
                offers_j, requests_j = self._book(start)
                calendar.clear(self._build(calendar, j), offers_j, requests_j)
            try:
                return self._build(calendar, k)
            except lab.DayNotReady as exc:
                raise Refused(409, str(exc)) from None

    def _build(self, calendar: lab.GridCalendar, k: int) -> lab.GridDay:
        price = None
        if k > 0 and k >= len(calendar.days):
            price = calendar.carried_prices(k, self._market_prices(*calendar.bounds[k - 1]))
        day = calendar.day(k, price)
        if day.start not in self._forecast:
            self._forecast[day.start] = lab.traffic_light(day)
            self._room[day.start] = lab.offer_room(day)
        return day

    def _market_prices(self, start: int, stop: int) -> np.ndarray:
        """The server's market price of each interval of [start, stop) [EUR/kWh]: the volume-
        weighted price of its sessions' trades (NaN without trades), as the lab's positions."""
        volume, money = np.zeros(stop - start), np.zeros(stop - start)
        with self.market.engine.connect() as conn:
            for interval, q, p in conn.execute(
                    sa.select(t.sessions.c.interval, t.trades.c.quantity_wh,
                              t.trades.c.price_meur_per_kwh)
                    .join(t.sessions, t.sessions.c.market_id == t.trades.c.market_id)
                    .where((t.sessions.c.interval >= start) & (t.sessions.c.interval < stop))):
                volume[interval - start] += q
                money[interval - start] += q * p / 1000
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(volume > 0, money / volume, np.nan)

    def _book(self, day_start: int) -> tuple[list[dict], list[dict]]:
        """The stored offers and TSO requests of a day, in arrival order."""
        with self.market.engine.connect() as conn:
            book = [{**r._mapping, "price_points": json.loads(r.price_points or "null")}
                    for r in conn.execute(sa.select(offers).where(
                        offers.c.day_start == day_start).order_by(offers.c.seq))]
            requests = [dict(r._mapping) for r in conn.execute(
                sa.select(tso_requests).where(tso_requests.c.day_start == day_start)
                .order_by(tso_requests.c.seq))]
        return book, requests

    # -- 1. after a session's clearing -------------------------------------------------------
    def after_clearing(self, market_id: str, interval: int) -> dict | None:
        """Traffic light of a cleared session's interval: stored with its ledger record and
        published; None if the interval is outside what the DSO validates."""
        from lemgrid.service.operator import Refused

        try:
            day = self.day(interval)
        except Refused:
            return None
        light = self._forecast[day.start][interval - day.start]
        with self.market.write() as (conn, tx):
            if conn.execute(sa.select(lights.c.interval).where(
                    lights.c.interval == interval)).first() is not None:
                return None  # another session of the same interval was checked already
            result = tx.append_operator([{"kind": "traffic-light", "market_id": market_id,
                                          "interval": interval, "state": light["state"],
                                          "reason": light["reason"]}])
            conn.execute(lights.insert().values(
                interval=interval, market_id=market_id, day_start=day.start,
                state=light["state"], reason=light["reason"], service=light["service"],
                stage="forecast", seq=result.first_seq))
        event = {"event": "traffic-light", "market_id": market_id, "interval": interval,
                 "state": light["state"], "reason": light["reason"], "stage": "forecast"}
        self.market.publish(event)
        if light["state"] != "green":
            self.market.publish({"event": "flex-request", "interval": interval,
                                 "service": light["service"], "reason": light["reason"]})
        return event

    # -- 2. offers ---------------------------------------------------------------------------
    def submit_offer(self, identity: dict, record: SignedRecord) -> dict:
        """Accept a signed flexibility offer for an amber interval (see module doc)."""
        from lemgrid.service.operator import Refused

        p = record.payload
        if record.signer != identity["key_id"]:
            raise Refused(403, "signer: the offer must be signed by the requesting key")
        return self.accept_offer(identity, p, lambda conn, tx: tx.append([record]).first_seq)

    def accept_offer(self, identity: dict, p: dict,
                     append: Callable[[sa.engine.Connection, Any], int]) -> dict:
        """Check an offer's payload ``p`` (a ``flex-offer`` record's fields) and store it;
        ``append(conn, tx)`` puts its ledger record(s) in the same transaction and returns the
        sequence number the offer row keeps (the signed record, or the UMEI attestation of
        :mod:`lemgrid.service.umei`)."""
        from lemgrid.service.operator import Refused

        if p["participant"] != identity["participant"]:
            raise Refused(403, f"payload.participant: {p['participant']!r} is not you")
        if identity["role"] == "aggregator":
            members = self.market.members_of(identity) - {identity["participant"]}
            with self.market.engine.connect() as conn:
                meters = set(conn.execute(sa.select(t.identities.c.meter).where(
                    t.identities.c.participant.in_(members))).scalars())
            if p["meter"] not in meters:
                raise Refused(403, f"payload.meter: {p['meter']!r} is not a member's meter")
        elif p["meter"] != identity["meter"]:
            raise Refused(403, f"payload.meter: {p['meter']!r} is not your meter")
        if p["log_id"] != self.market.log_id:
            raise Refused(422, f"payload.log_id: this market's log is {self.market.log_id}")
        with self.market.engine.connect() as conn:
            light = conn.execute(sa.select(lights).where(
                lights.c.interval == p["interval"])).first()
            tso_asks = conn.execute(sa.select(tso_requests.c.request_id).where(
                tso_requests.c.interval == p["interval"])).first() is not None
        reserved = light is not None and self._long_term_offer(p)
        if light is None or (light.state == "green" and not tso_asks and not reserved):
            raise Refused(422, f"payload.interval: no flexibility request for interval "
                               f"{p['interval']} (not amber, no TSO request)")
        if light.stage != "forecast":
            raise Refused(409, f"payload.interval: the DSO has cleared interval "
                               f"{p['interval']}'s day")
        self.day(p["interval"])  # (re)built: a restart forgets what resources can do
        room = self._room[light.day_start]
        direction = 1 if p["direction"] == "up" else -1
        found = room.get((p["resource"], p["asset"], p["interval"], direction))
        if found is None or found[2] != p["meter"]:
            raise Refused(422, f"payload.asset: {p['meter']!r} has no {p['resource']} "
                               f"{p['asset']} "
                               f"that can move {p['direction']} at interval {p['interval']}")
        most_kw, baseline_kw, _owner = found
        if p.get("min_power_w", 0) > p["power_w"]:
            raise Refused(422, f"payload.min_power_w: {p['min_power_w']} W is more than the "
                               f"offer's power_w ({p['power_w']} W)")
        _check_price_points(p)
        dso = self.calendar().scenario.config.dso
        assert dso is not None  # a Grid exists only for a scenario with a dso: block
        clearing = dso.flexibility.clearing
        for name in ("min_power_w", "price_points"):
            if p.get(name) and clearing != "optimal":
                raise Refused(422, f"payload.{name}: this market's DSO clears by the "
                                   f"{clearing!r} merit order, which takes any part of an "
                                   "offer at one price (dso.flexibility.clearing: optimal "
                                   "honours it)")
        if p["power_w"] > most_kw * 1000 + 1e-6:
            raise Refused(422, f"payload.power_w: {p['power_w']} W is more than "
                               f"{p['resource']} {p['asset']} can move {p['direction']} "
                               f"({most_kw * 1000:.0f} W)")
        with self.market.write() as (conn, tx):
            if conn.execute(sa.select(offers.c.offer_id).where(
                    offers.c.offer_id == p["offer_id"])).first() is not None:
                raise Refused(409, f"payload.offer_id: {p['offer_id']!r} exists already")
            again = conn.execute(sa.select(lights.c.stage).where(
                lights.c.interval == p["interval"])).scalar()
            if again != "forecast":
                raise Refused(409, "payload.interval: the DSO has cleared this day")
            seq = append(conn, tx)
            conn.execute(offers.insert().values(
                offer_id=p["offer_id"], provider=p["participant"], participant=p["meter"],
                kind=p["resource"], asset=p["asset"], interval=p["interval"],
                day_start=light.day_start, direction=p["direction"], power_w=p["power_w"],
                price_meur_per_kwh=p["price_meur_per_kwh"],
                baseline_w=round(baseline_kw * 1000), seq=seq,
                min_power_w=p.get("min_power_w", 0),
                price_points=json.dumps(p["price_points"]) if "price_points" in p else "",
                availability_meur_per_kw_h=p.get("availability_meur_per_kw_h", 0)))
        self.market.publish({"event": "flex-offer", "offer_id": p["offer_id"],
                             "interval": p["interval"], "direction": p["direction"]})
        return {"offer_id": p["offer_id"], "status": "open", "seq": seq}

    def _long_term_offer(self, p: dict) -> bool:
        """Whether an offer is for a long-term product: with the scenario's ``lead_time:
        long-term``, every offer is one, at an interval of its day's reservation window (the DSO
        reserves the window whatever the light), with its availability price; without it, an
        offer has none.

        Raises
        ------
        Refused
            422 naming the field, if the offer does not fit the DSO's lead time.
        """
        from lemgrid.service.operator import Refused

        dso = self.calendar().scenario.config.dso
        assert dso is not None  # a Grid exists only for a scenario with a dso: block
        flex = dso.flexibility
        if flex.lead_time != "long-term":
            if "availability_meur_per_kw_h" in p:
                raise Refused(422, f"payload.availability_meur_per_kw_h: this market's DSO buys "
                                   f"{flex.lead_time} (dso.flexibility.lead_time), not long-term "
                                   "reservations, and pays no availability")
            return False
        assert flex.reservation is not None  # the scenario's check: long-term has a window
        day = self.day(p["interval"])
        if not day.reserves(p["interval"]):
            raise Refused(422, f"payload.interval: {p['interval']} is outside its day's "
                               f"reservation window {day.reservation_window()} "
                               "(dso.flexibility.reservation "
                               f"{flex.reservation.start}-{flex.reservation.end}, the grid's "
                               "local time): long-term offers are for the window")
        return True

    # -- 3. the DSO's clearing ---------------------------------------------------------------
    def clear_day(self, interval: int) -> dict:
        """Clear the flexibility of the day containing ``interval`` (every posted offer), by the
        lab's DSO; activations and final lights stored with their ledger records and a
        checkpoint, in one transaction."""
        from lemgrid.service.operator import Refused

        with self._compute:
            day = self.day(interval)
            with self.market.engine.connect() as conn:
                if conn.execute(sa.select(days.c.day_start).where(
                        days.c.day_start == day.start)).first() is not None:
                    raise Refused(409, f"interval: the day starting at {day.start} is cleared")
            book, requests = self._book(day.start)
            try:
                outcome = self.calendar().clear(day, book, requests)
                committed = self._commit_day(day, outcome)
            except BaseException:
                self._forget()  # the calendar may be ahead of what is stored
                raise
        return self._published_day(day, *committed)

    def _commit_day(self, day: lab.GridDay, outcome: dict) -> tuple[list, list, list, int]:
        """Activations, reservations and final lights with their ledger records and a
        checkpoint, in one transaction."""
        from lemgrid.service.operator import Refused

        acts = [dict(a, activation_id=f"a{day.start}-{k}")
                for k, a in enumerate(outcome["activations"]) if a["power_w"] > 0]
        held = [dict(r, reservation_id=f"r{day.start}-{k}")
                for k, r in enumerate(outcome["reservations"])]
        with self.market.write() as (conn, tx):
            if conn.execute(sa.select(days.c.day_start).where(
                    days.c.day_start == day.start)).first() is not None:
                raise Refused(409, f"interval: the day starting at {day.start} is cleared")
            stored = {r.interval: r for r in conn.execute(sa.select(lights).where(
                lights.c.day_start == day.start))}
            records = [{"kind": "flex-activation", "activation_id": a["activation_id"],
                        "offer_id": a["offer_id"] or "direct-control",
                        "provider": a["provider"], "interval": a["interval"],
                        "direction": a["direction"], "power_w": a["power_w"],
                        "price_meur_per_kwh": a["price_meur_per_kwh"], "buyer": a["buyer"],
                        "utilisation_ueur": a["utilisation_ueur"]} for a in acts]
            records += [{"kind": "flex-reservation", **{c: r[c] for c in (
                "reservation_id", "provider", "participant", "interval", "window_stop",
                "availability_ueur")}} for r in held]
            changed = [x for x in outcome["lights"] if x["interval"] in stored]
            records += [{"kind": "traffic-light", "market_id": stored[x["interval"]].market_id,
                         "interval": x["interval"], "state": x["state"],
                         "reason": x["reason"]} for x in changed]
            result = tx.append_operator(records, checkpoint=True,
                                        label=f"flexibility day {day.start}")
            for k, a in enumerate(acts):
                conn.execute(activations.insert().values(
                    seq=result.first_seq + k, **{c: a[c] for c in (
                        "activation_id", "offer_id", "provider", "participant", "interval",
                        "direction", "power_w", "price_meur_per_kwh", "buyer", "service",
                        "delivered", "utilisation_ueur", "penalty_ueur")}))
            for k, r in enumerate(held):
                conn.execute(reservations.insert().values(
                    reservation_id=r["reservation_id"], provider=r["provider"],
                    participant=r["participant"], day_start=day.start,
                    window_start=r["interval"], window_stop=r["window_stop"],
                    availability_ueur=r["availability_ueur"],
                    seq=result.first_seq + len(acts) + k))
            for k, x in enumerate(changed):
                conn.execute(lights.update().where(lights.c.interval == x["interval"]).values(
                    state=x["state"], reason=x["reason"], stage="cleared",
                    seq=result.first_seq + len(acts) + len(held) + k))
            conn.execute(days.insert().values(day_start=day.start,
                                              checkpoint_seq=result.checkpoint["seq"]))
        return acts, held, changed, result.checkpoint["seq"]

    def _published_day(self, day: lab.GridDay, acts: list, held: list, changed: list,
                       checkpoint_seq: int) -> dict:
        """Announce a committed flexibility day on the feed; its summary."""
        for a in acts:
            self.market.publish({"event": "flex-activation", **{k: a[k] for k in (
                "activation_id", "offer_id", "interval", "direction", "power_w",
                "price_meur_per_kwh", "buyer")}})
        for r in held:
            self.market.publish({"event": "flex-reservation", **{k: r[k] for k in (
                "reservation_id", "provider", "interval", "window_stop")}})
        for x in changed:
            self.market.publish({"event": "traffic-light", "interval": x["interval"],
                                 "state": x["state"], "reason": x["reason"],
                                 "stage": "cleared"})
        return {"day_start": day.start, "n_activations": len(acts),
                "n_reservations": len(held), "checkpoint_seq": checkpoint_seq}

    # -- 4. measured delivery ----------------------------------------------------------------
    def settle_delivery(self, interval: int) -> dict:
        """Settle the activations of the cleared day containing ``interval`` on what was
        measured (:attr:`measurements`): per resource and interval, the shortfall is what the
        measured move falls short of the activations beyond the measurement's tolerance,
        shared pro rata; each measured activation is paid its price on what was delivered and
        owes the scenario's non-delivery penalty on the shortfall
        (:func:`lemgrid.dso.flexibility.activation_money_eur`). A ``flex-delivery`` record per
        measured activation and a checkpoint, with the activations' rows, in one transaction;
        activations without a measurement keep the money of the clearing (unmetered). The
        next day still starts from the day's cleared plan."""
        from lemgrid.dso.flexibility import activation_money_eur
        from lemgrid.service.operator import Refused

        calendar = self.calendar()
        try:
            start, stop = calendar.bounds[calendar.index(interval)]
        except InputError as exc:
            raise Refused(422, str(exc)) from None
        dso = calendar.scenario.config.dso
        assert dso is not None
        dt_h = float(calendar.scenario.dt_h)
        measured: dict[tuple[str, int, int], tuple[int, int]] = {}
        for source in self.measurements:
            measured.update(source(start, stop))
        with self.market.engine.connect() as conn:
            day = conn.execute(sa.select(days).where(days.c.day_start == start)).first()
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(activations, offers.c.kind, offers.c.asset)
                .join(offers, offers.c.offer_id == activations.c.offer_id)
                .where((activations.c.interval >= start) & (activations.c.interval < stop))
                .order_by(activations.c.seq))]
        if day is None:
            raise Refused(409, f"interval: the DSO has not cleared the day starting at {start}")
        if day.delivery_seq is not None:
            raise Refused(409, f"interval: the delivery of the day starting at {start} is "
                               "settled")
        groups: dict[tuple[str, int, int], list[dict]] = {}
        for r in rows:
            groups.setdefault((r["kind"], r["asset"], r["interval"]), []).append(r)
        records = []
        for key, group in groups.items():
            if key not in measured:
                continue
            moved_w, tolerance_w = measured[key]
            signed = [r["power_w"] * (1 if r["direction"] == "up" else -1) for r in group]
            activated_w = sum(signed)
            sign = 1 if activated_w >= 0 else -1
            short_w = min(abs(activated_w),
                          max(0, (activated_w - moved_w) * sign - tolerance_w))
            ours = [r for r, w in zip(group, signed, strict=True) if w * sign > 0]
            total_w = sum(r["power_w"] for r in ours)
            for r in ours:
                share_w = round(short_w * r["power_w"] / total_w) if total_w else 0
                kw = r["power_w"] / 1000
                # the cleared price: exact where the clearing paid it, else the recorded one
                price = (r["utilisation_ueur"] / 1e6 / (kw * dt_h) if r["delivered"]
                         else r["price_meur_per_kwh"] / 1000)
                pay, owe = activation_money_eur(
                    kw, price, share_w / 1000,
                    dso.flexibility.non_delivery_penalty_eur_per_kwh, dt_h)
                records.append({"kind": "flex-delivery", "activation_id": r["activation_id"],
                                "power_w": r["power_w"], "shortfall_w": share_w,
                                "utilisation_ueur": round(float(pay) * 1e6),
                                "penalty_ueur": round(float(owe) * 1e6)})
        if not records:
            raise Refused(422, f"interval: nothing measured for the activations of the day "
                               f"starting at {start} (post meter readings and baselines first)")
        with self.market.write() as (conn, tx):
            again = conn.execute(sa.select(days.c.delivery_seq).where(
                days.c.day_start == start)).scalar()
            if again is not None:
                raise Refused(409, "interval: the delivery of this day is settled")
            result = tx.append_operator(records, checkpoint=True,
                                        label=f"flexibility delivery {start}")
            for x in records:  # (an activation's seq stays its flex-activation record's)
                conn.execute(activations.update().where(
                    activations.c.activation_id == x["activation_id"]).values(
                    delivered=x["shortfall_w"] == 0, utilisation_ueur=x["utilisation_ueur"],
                    penalty_ueur=x["penalty_ueur"]))
            conn.execute(days.update().where(days.c.day_start == start).values(
                delivery_seq=result.checkpoint["seq"]))
        short = [x for x in records if x["shortfall_w"]]
        self.market.publish({"event": "flex-delivery", "day_start": start,
                             "n_measured": len(records), "n_short": len(short)})
        return {"day_start": start, "n_measured": len(records), "n_short": len(short),
                "utilisation_eur": sum(x["utilisation_ueur"] for x in records) / 1e6,
                "penalty_eur": sum(x["penalty_ueur"] for x in records) / 1e6,
                "checkpoint_seq": result.checkpoint["seq"]}

    # -- the TSO's requests --------------------------------------------------------------------
    def submit_request(self, identity: dict, body: dict, also: Sequence[dict] = (),
                       buyer: str = "TSO") -> dict:
        """Store a grid operator's flexibility request for an interval, cleared with the DSO's
        day: the TSO's by the scenario's coordination scheme (as ``coordination.tso_requests``),
        the DSO's (``buyer`` 'DSO') in its own market (as ``flexibility.requests``); with its
        ``flex-request`` ledger record (and the operator records ``also``, e.g. a UMEI
        attestation, in the same transaction)."""
        from lemgrid.service.operator import Refused

        calendar = self.calendar()
        dso = calendar.scenario.config.dso
        assert dso is not None  # a Grid exists only for a scenario with a dso: block
        if buyer == "TSO" and dso.coordination.scheme == "none":
            raise Refused(422, "dso.coordination.scheme: this market's DSO does not coordinate "
                               "with the TSO (scheme 'none'): no TSO requests")
        if buyer == "DSO" and not (dso.traffic_light and dso.flexibility.enabled):
            raise Refused(422, "dso.flexibility.enabled: this market's DSO runs no flexibility "
                               "market (or no traffic light): it buys nothing")
        try:
            k = calendar.index(body["interval"])
        except InputError as exc:
            raise Refused(422, str(exc)) from None
        network = calendar.scenario.network
        for i, bus in enumerate(body.get("buses") or ()):
            try:
                network.bus_position(bus)
            except InputError as exc:
                raise Refused(422, f"buses[{i}]: {exc}") from None
        day_start = calendar.bounds[k][0]
        with self.market.write() as (conn, tx):
            if conn.execute(sa.select(days.c.day_start).where(
                    days.c.day_start == day_start)).first() is not None:
                raise Refused(409, f"interval: the DSO has cleared the day starting at "
                                   f"{day_start}")
            if conn.execute(sa.select(tso_requests.c.request_id).where(
                    tso_requests.c.request_id == body["request_id"])).first() is not None:
                raise Refused(409, f"request_id: {body['request_id']!r} exists already")
            result = tx.append_operator([{"kind": "flex-request", "buyer": buyer,
                                          "requested_by": identity["participant"], **body},
                                         *also])
            conn.execute(tso_requests.insert().values(
                requested_by=identity["participant"], day_start=day_start, buyer=buyer,
                seq=result.first_seq, **{**body, "buses": ",".join(body.get("buses") or ())}))
        self.market.publish({"event": f"{buyer.lower()}-request", **body})
        return {**body, "status": "open", "seq": result.first_seq}

    def tso_requests(self) -> list[dict]:
        """The TSO's requests; ``buses`` the bus names of each one's area (None: every bus)."""
        with self.market.engine.connect() as conn:
            return [{**r._mapping, "buses": r.buses.split(",") if r.buses else None}
                    for r in conn.execute(sa.select(tso_requests).where(
                        tso_requests.c.buyer == "TSO").order_by(tso_requests.c.seq))]

    # -- reading -----------------------------------------------------------------------------
    def room(self, interval: int) -> dict[tuple[str, int, int, int], tuple[float, float, str]]:
        """What each resource can offer in the day of ``interval``
        (:func:`~lemgrid.service.engine.offer_room`)."""
        return self._room[self.day(interval).start]

    def lights(self) -> list[dict]:
        with self.market.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(lights).order_by(lights.c.interval))]

    def requests(self) -> list[dict]:
        """Open flexibility requests: amber intervals whose day is not cleared yet (the DSO's),
        then the grid operators' explicit requests of days not cleared yet."""
        with self.market.engine.connect() as conn:
            dso = [{"interval": r.interval, "service": r.service, "reason": r.reason,
                    "buyer": "DSO"}
                   for r in conn.execute(sa.select(lights).where(
                       (lights.c.state != "green") & (lights.c.stage == "forecast"))
                       .order_by(lights.c.interval))]
            tso = [{"interval": r.interval, "service": r.service, "direction": r.direction,
                    "power_w": r.power_w, "buyer": r.buyer}
                   for r in conn.execute(sa.select(tso_requests).where(
                       ~tso_requests.c.day_start.in_(sa.select(days.c.day_start)))
                       .order_by(tso_requests.c.seq))]
        return dso + tso

    def _visible(self, table: sa.Table, identity: dict) -> list[dict]:
        query = sa.select(table).order_by(table.c.seq)
        if identity["role"] not in ("operator", "dso"):
            mine = self.market.members_of(identity)
            query = query.where(table.c.provider.in_(mine))
        with self.market.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def offers(self, identity: dict) -> list[dict]:
        """All offers for the DSO and the operator; a participant's or aggregator's own."""
        return self._visible(offers, identity)

    def activations(self, identity: dict) -> list[dict]:
        """All activations for the DSO and the operator; what it bought for the TSO; a
        participant's or aggregator's own."""
        if identity["role"] == "tso":
            with self.market.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.select(activations).where(
                    activations.c.buyer == "TSO").order_by(activations.c.seq))]
        return self._visible(activations, identity)

    def reservations(self, identity: dict) -> list[dict]:
        """All long-term reservations for the DSO and the operator; a participant's or
        aggregator's own."""
        return self._visible(reservations, identity)

    def catch_up(self) -> list[int]:
        """Traffic lights of settled sessions that have none (a crash between clearing and the
        grid check); returns their intervals."""
        with self.market.engine.connect() as conn:
            missing = list(conn.execute(
                sa.select(t.sessions.c.market_id, t.sessions.c.interval)
                .where((t.sessions.c.state == "settled")
                       & ~t.sessions.c.interval.in_(sa.select(lights.c.interval)))
                .order_by(t.sessions.c.gate_ms)))
        return [r.interval for r in missing if self.after_clearing(r.market_id, r.interval)]


def _check_price_points(p: dict) -> None:
    """An offer's price curve (``price_points``, optional): from [0, its price] to [its power,
    ...], W rising, prices not falling (a cost the DSO's clearing can minimise)."""
    from lemgrid.service.operator import Refused

    points = p.get("price_points")
    if points is None:
        return
    if list(points[0]) != [0, p["price_meur_per_kwh"]]:
        raise Refused(422, f"payload.price_points[0]: must be [0, price_meur_per_kwh] = "
                           f"[0, {p['price_meur_per_kwh']}], not {list(points[0])}")
    if points[-1][0] != p["power_w"]:
        raise Refused(422, f"payload.price_points[{len(points) - 1}]: must end at power_w "
                           f"({p['power_w']} W), not {points[-1][0]} W")
    for i in range(1, len(points)):
        if points[i][0] <= points[i - 1][0]:
            raise Refused(422, f"payload.price_points[{i}]: its W must be more than the point "
                               "before's")
        if points[i][1] < points[i - 1][1]:
            raise Refused(422, f"payload.price_points[{i}]: its price may not fall below the "
                               "point before's (a cost that is not convex cannot be cleared at "
                               "least cost)")
