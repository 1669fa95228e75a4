"""Community sessions on the market server: the operator acts as the community's manager.

A community session covers a run of intervals (a day). The operator opens it with the
community's terms (members in order, their buses, the retailer's prices, the value of curtailed
energy and of battery wear) and a gate. Until the gate each member posts one signed
``community-bid``: its forecasts of inflexible load and PV [kW] and its flexible assets' rows by
kind (:mod:`lemgrid.assets.kinds`). Reals travel as decimal strings
(:func:`lemgrid.ledger.units.decimals`), so that the manager's LP sees exactly the numbers the
member signed. What a member would pay alone, and where its assets must end the session, the
manager computes itself from the bid by the owners' rules (business-as-usual), as the lab does:
a member cannot claim a higher reference bill to take a larger share of the saving.

At the gate the scheduler clears the members who bid with the lab's community market
(:func:`lemgrid.sim.designs.community_problem_of` and
:func:`lemgrid.sim.designs.clear_community`: the reference, the manager's LP, local matching at
the internal price, benefit sharing), in one transaction with a ``community-clearing`` ledger
record (the members, the hash of the published results and the members' money, balanced) and a
signed checkpoint. Each member then reads its own schedule, asset plans and positions; its statement
is the session's money [µ€] (:meth:`lemgrid.service.operator.Market.statement`). A clearing
that fails (an infeasible schedule) leaves the session ``failed``, never settled.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations (local
# ``Annotated`` aliases in :func:`add_routes`) when they are declared.
import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lemgrid.errors import InputError, InfeasibleError
from lemgrid.ledger.canonical import canonical_bytes
from lemgrid.ledger.records import DECIMAL, SignedRecord
from lemgrid.ledger.units import decimals, reals, table_columns, table_from_columns
from lemgrid.service import engine as lab
from lemgrid.service import tables as t
from lemgrid.service.operator import Market, Refused

Text = Annotated[str, Field(min_length=1, max_length=200)]
Decimal = Annotated[str, Field(pattern=f"^{DECIMAL.pattern}$", max_length=40,
                               examples=["0.25"])]
MAX_INTERVALS = 10_000
#: Mechanism name of community sessions in the sessions table.
COMMUNITY = "community"
#: Fields of :class:`~lemgrid.settlement.bills.Positions` published per member.
POSITION_FIELDS = ("scheduled_kw", "market_bought_kwh", "market_sold_kwh", "local_bought_kwh",
                   "local_sold_kwh", "market_paid_eur", "retail_import_kwh",
                   "retail_export_kwh", "sharing_eur")


class CommunityPrices(BaseModel):
    """The retailer's and the settlement's prices [EUR/kWh; EUR/day for the fixed fee]
    (:class:`lemgrid.settlement.bills.Prices`)."""

    model_config = ConfigDict(extra="forbid")
    import_eur_per_kwh: Decimal
    network_eur_per_kwh: Decimal
    export_eur_per_kwh: Decimal
    local_network_eur_per_kwh: Decimal
    levies_eur_per_kwh: Decimal
    fixed_eur_per_day: Decimal
    imbalance_short_eur_per_kwh: Decimal
    imbalance_long_eur_per_kwh: Decimal


class CommunitySessionBody(BaseModel):
    """A community session: its first interval and length, the members (in the order of the
    manager's LP) and their buses, the prices, the value of curtailed energy and of battery
    wear, and the gate."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "market_id": "community-day-1", "interval": 0, "n_intervals": 2, "dt_h": "0.25",
        "gate_ms": 1_780_000_900_000, "members": ["alice", "bob"], "bus": [3, 7],
        "prices": {"import_eur_per_kwh": "0.25", "network_eur_per_kwh": "0.08",
                   "export_eur_per_kwh": "0.07", "local_network_eur_per_kwh": "0.02",
                   "levies_eur_per_kwh": "0.0", "fixed_eur_per_day": "0.0",
                   "imbalance_short_eur_per_kwh": "0.33", "imbalance_long_eur_per_kwh": "0.07"},
        "curtailment_eur_per_kwh": "0.07", "battery_wear_eur_per_kwh": "0.001"}]})
    market_id: Text
    interval: Annotated[StrictInt, Field(ge=0, le=10**9)]
    n_intervals: Annotated[StrictInt, Field(ge=1, le=MAX_INTERVALS)]
    dt_h: Decimal
    gate_ms: Annotated[StrictInt, Field(ge=0, le=2**62)]
    members: Annotated[list[Text], Field(min_length=1, max_length=10_000)]
    bus: Annotated[list[Annotated[StrictInt, Field(ge=0, le=10**9)]],
                   Field(min_length=1, max_length=10_000)]
    prices: CommunityPrices
    curtailment_eur_per_kwh: Decimal
    battery_wear_eur_per_kwh: Decimal


#: A column of an asset table: reals as decimal strings (rows of them for time series),
#: integers, booleans or names.
Column = list[StrictBool | StrictInt | Text | list[Decimal]]


class CommunityBidPayload(BaseModel):
    """A member's bid into a community session (signed, in the ledger's canonical form)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["community-bid"]
    log_id: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    market_id: Text
    interval: Annotated[StrictInt, Field(ge=0, le=10**9)]
    participant: Text
    meter: Text
    load_kw: Annotated[list[Decimal], Field(min_length=1, max_length=MAX_INTERVALS)]
    pv_kw: Annotated[list[Decimal], Field(min_length=1, max_length=MAX_INTERVALS)]
    assets: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")],
                 dict[Annotated[str, Field(pattern=r"^[a-z_0-9]{1,60}$")], Column]]
    nonce: Text


class SignedCommunityBid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payload: CommunityBidPayload
    signer: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    sig: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


# -- the wire form of a member's part of the manager's problem ----------------------------------

def bid_payload(problem: Any, member: int) -> dict:
    """The data fields of member ``member``'s bid from a community problem
    (:class:`lemgrid.market.community.CommunityProblem`): its forecasts and assets (its own
    rows of every kind, in their order, without ``owner``)."""
    from lemgrid.assets.tables import take_rows

    return {"load_kw": decimals(problem.load_p_kw[:, member]),
            "pv_kw": decimals(problem.pv_p_kw[:, member]),
            "assets": {name: table_columns(take_rows(table, table.owner == member),
                                           skip=("owner",))
                       for name, table in problem.kinds.items()}}


def _read_bid(p: dict, n_intervals: int) -> dict:
    """A bid's numbers as arrays; InputError naming the field of the first bad one."""
    from lemgrid.assets.kinds import asset_kind

    out: dict[str, Any] = {"assets": {}}
    for name in ("load_kw", "pv_kw"):
        out[name] = reals(p[name], f"payload.{name}", minimum=0.0 if name == "pv_kw" else None)
        if len(out[name]) != n_intervals:
            raise InputError(f"payload.{name}: {len(out[name])} values, the session has "
                             f"{n_intervals} intervals")
    for name, columns in p["assets"].items():
        where = f"payload.assets.{name}"
        try:
            kind = asset_kind(name)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        rows = len(next(iter(columns.values()), []))
        table = table_from_columns(kind.table([]), columns, where,
                                   owner=np.zeros(rows, dtype=np.int64))
        for column in ("start", "stop"):  # window indices are relative to the session
            index = getattr(table, column, None)
            if index is not None and len(index) and index.max() > n_intervals:
                raise InputError(f"{where}.{column}: at most {n_intervals} (the session's "
                                 "intervals)")
        out["assets"][name] = table
    return out


# -- the operator's side ------------------------------------------------------------------------

def create(market: Market, body: CommunitySessionBody) -> dict:
    """Open a community session: bids until ``gate_ms``, then the manager's clearing."""
    if market.spec is not None:
        raise Refused(422, f"market_id: this market runs its scenario's design "
                           f"({market.spec.mechanism!r}); community sessions are opened in a "
                           "market without a scenario")
    if len(body.bus) != len(body.members):
        raise Refused(422, f"bus: {len(body.bus)} buses for {len(body.members)} members")
    if len(set(body.members)) != len(body.members):
        raise Refused(422, "members: a member is named twice")
    try:
        if not float(body.dt_h) > 0:
            raise InputError("dt_h: must be positive")
        for name in ("curtailment_eur_per_kwh", "battery_wear_eur_per_kwh"):
            reals(getattr(body, name), name)
        for name, value in body.prices.model_dump().items():
            reals(value, f"prices.{name}")
    except InputError as exc:
        raise Refused(422, str(exc)) from None
    with market.write() as (conn, _tx):
        market.insert_session(conn, body.market_id, body.interval, body.gate_ms, COMMUNITY,
                              "bidding")
        conn.execute(t.community_sessions.insert().values(
            market_id=body.market_id, terms=body.model_dump_json()))
    return {**market.session(body.market_id), "members": body.members}


def _terms(conn: sa.engine.Connection, market_id: str) -> tuple[Any, CommunitySessionBody]:
    row = conn.execute(sa.select(t.sessions, t.community_sessions.c.terms).join(
        t.community_sessions, t.community_sessions.c.market_id == t.sessions.c.market_id)
        .where(t.sessions.c.market_id == market_id)).first()
    if row is None:
        raise Refused(404, f"market_id: no community session {market_id!r}")
    return row, CommunitySessionBody.model_validate_json(row.terms)


def bid(market: Market, identity: dict, market_id: str, record: SignedRecord) -> dict:
    """Accept a member's signed bid before the gate: ledger entry and row, one transaction."""
    p = record.payload
    market.check_own(identity, market_id, record)
    with market.write() as (conn, tx):
        s, terms = _terms(conn, market_id)
        if p["interval"] != s.interval:
            raise Refused(422, f"payload.interval: session {market_id!r} starts at interval "
                               f"{s.interval}")
        if s.state != "bidding" or market.clock_ms() >= s.gate_ms:
            raise Refused(409, f"market_id: the gate of {market_id!r} is closed")
        if p["participant"] not in terms.members:
            raise Refused(403, f"payload.participant: {p['participant']!r} is not a member of "
                               f"community session {market_id!r}")
        try:
            _read_bid(p, terms.n_intervals)
        except InputError as exc:
            raise Refused(422, str(exc)) from None
        result = tx.append([record])
        conn.execute(t.community_bids.insert().values(
            market_id=market_id, participant=p["participant"], body=json.dumps(p),
            seq=result.first_seq))
    market.publish({"event": "community-bid", "market_id": market_id})
    return {"market_id": market_id, "participant": p["participant"], "status": "accepted",
            "seq": result.first_seq}


def tick(market: Market) -> list[str]:
    """Clear the community sessions whose gate has passed."""
    now = market.clock_ms()
    with market.engine.connect() as conn:
        due = [r.market_id for r in conn.execute(sa.select(t.sessions.c.market_id).where(
            (t.sessions.c.mechanism == COMMUNITY) & (t.sessions.c.state == "bidding")
            & (t.sessions.c.gate_ms <= now)).order_by(t.sessions.c.gate_ms))]
    return [market_id for market_id in due if _clear(market, market_id)]


def _clear(market: Market, market_id: str) -> bool:
    from lemgrid.assets.kinds import asset_kinds

    with market.write() as (conn, tx):
        s, terms = _terms(conn, market_id)
        if s.state != "bidding":  # cleared meanwhile by another tick
            return False
        stored = {r.participant: json.loads(r.body) for r in conn.execute(
            sa.select(t.community_bids).where(t.community_bids.c.market_id == market_id))}
        members = [m for m in terms.members if m in stored]
        head = [{"kind": "gate-closure", "market_id": market_id, "interval": s.interval}]
        if not members:
            tx.append_operator(head, checkpoint=True, label=f"session {market_id}")
            conn.execute(t.sessions.update().where(t.sessions.c.market_id == market_id)
                         .values(state="settled"))
            return True
        bids = [_read_bid(stored[m], terms.n_intervals) for m in members]
        try:
            problem, reference_eur, prices = _problem(terms, members, bids, list(asset_kinds()))
            result, positions = _clear_community()(problem, reference_eur, prices)
        except (InfeasibleError, InputError) as exc:  # no schedule serves the bids as posted
            conn.execute(t.sessions.update().where(t.sessions.c.market_id == market_id)
                         .values(state="failed"))
            failed = str(exc)
        else:
            failed = ""
        if failed:
            tx.append_operator(head)
        else:
            bodies = _results(problem, result, positions, reference_eur, members)
            # what each member receives in the session (the statements' sign): minus what it
            # pays the community for local energy and in benefit-sharing transfers
            cash = {m: -float(positions.market_paid_eur[:, i].sum()
                              + positions.sharing_eur[:, i].sum())
                    for i, m in enumerate(members)}
            postings = lab.settle(cash)
            tx.append_operator([*head, {
                "kind": "community-clearing", "market_id": market_id,
                "interval": s.interval, "members": members,
                "results_sha256": hashlib.sha256(canonical_bytes(bodies)).hexdigest(),
                "postings": postings}], checkpoint=True, label=f"session {market_id}")
            conn.execute(t.community_results.insert(), [
                {"market_id": market_id, "participant": who, "body": json.dumps(body)}
                for who, body in bodies.items()])
            if postings:
                conn.execute(t.statements.insert(), [
                    {"market_id": market_id, "participant": x["account"],
                     "amount_ueur": x["amount_ueur"]} for x in postings])
            conn.execute(t.sessions.update().where(t.sessions.c.market_id == market_id)
                         .values(state="settled"))
    market.publish({"event": "community-clearing", "market_id": market_id,
                    "state": "failed" if failed else "settled",
                    **({"reason": failed[:500]} if failed else {})})
    return not failed


def _clear_community() -> Callable:
    """The lab's community clearing, looked up when called (``--via-server`` routes the lab's
    own calls through the server and puts this one back while the server clears)."""
    import lemgrid.sim.designs

    return lemgrid.sim.designs.clear_community


def _problem(terms: CommunitySessionBody, members: list[str], bids: list[dict],
             kind_order: list[str]) -> tuple[Any, np.ndarray, Any]:
    """The manager's problem of the members who bid (in the terms' order, their assets in
    member order), what each would pay alone, and the prices."""
    from lemgrid.settlement.bills import Prices
    from lemgrid.sim.designs import community_problem_of

    bus = dict(zip(terms.members, terms.bus, strict=True))
    kinds = {}
    for name in kind_order:
        parts = [(i, b["assets"][name]) for i, b in enumerate(bids)
                 if name in b["assets"] and len(b["assets"][name])]
        if parts:
            columns = [f for f in parts[0][1].__dataclass_fields__]
            kinds[name] = type(parts[0][1])(**{
                c: np.concatenate([np.full(len(table), i, dtype=np.int64) if c == "owner"
                                   else getattr(table, c) for i, table in parts])
                for c in columns})
    prices = Prices(**{k: float(v) for k, v in terms.prices.model_dump().items()})
    problem, reference_eur = community_problem_of(
        np.array(members), np.array([bus[m] for m in members]),
        np.stack([b["load_kw"] for b in bids], axis=1),
        np.stack([b["pv_kw"] for b in bids], axis=1), kinds, prices, float(terms.dt_h),
        float(terms.curtailment_eur_per_kwh), float(terms.battery_wear_eur_per_kwh))
    return problem, reference_eur, prices


def _results(problem: Any, result: Any, positions: Any, reference_eur: np.ndarray,
             members: list[str]) -> dict[str, dict]:
    """What is published: the community's part (key ``""``) and each member's own."""
    public = {"price_eur_per_kwh": decimals(result.price_eur_per_kwh),
              "local_price_eur_per_kwh": decimals(positions.price_eur_per_kwh),
              "import_kw": decimals(result.import_kw), "export_kw": decimals(result.export_kw),
              "retailer_cost_eur": decimals(result.retailer_cost_eur),
              "welfare_eur": decimals(result.welfare_eur), "lp_solves": int(result.lp_solves),
              "members": members}
    out: dict[str, dict] = {"": public}
    for i, who in enumerate(members):
        plans = {}
        for name, plan in result.kinds.items():
            rows = np.flatnonzero(problem.kinds[name].owner == i)
            plans[name] = {"output_kw": decimals(plan.output_kw[:, rows]),
                           "state": decimals(plan.state[:, rows]),
                           "detail": {k: decimals(v[:, rows]) for k, v in plan.detail.items()}}
        out[who] = {
            "reference_eur": decimals(reference_eur[i]),
            "curtailment_kw": decimals(result.curtailment_kw[:, i]),
            "member_price_eur_per_kwh": decimals(result.member_price_eur_per_kwh[:, i]),
            "member_cost_eur": decimals(result.member_cost_eur[i]),
            "positions": {f: decimals(getattr(positions, f)[:, i]) for f in POSITION_FIELDS},
            "plans": plans}
    return out


def result(market: Market, identity: dict, market_id: str, participant: str) -> dict:
    """A member's published result with the community's part; its own only (an aggregator:
    its members'; the operator: anyone's)."""
    if identity["role"] != "operator" and participant not in market.members_of(identity):
        raise Refused(403, f"participant: the result of {participant!r} is not yours")
    with market.engine.connect() as conn:
        s, _ = _terms(conn, market_id)
        rows = {r.participant: json.loads(r.body) for r in conn.execute(
            sa.select(t.community_results).where(
                (t.community_results.c.market_id == market_id)
                & t.community_results.c.participant.in_(("", participant))))}
    if s.state != "settled":
        raise Refused(404, f"market_id: community session {market_id!r} is {s.state}")
    if participant not in rows:
        raise Refused(404, f"participant: {participant!r} has no result in {market_id!r} "
                           "(no bid)")
    return {"market_id": market_id, "participant": participant, "community": rows[""],
            **rows[participant]}


def add_routes(app: Any, market: Market, role: Callable) -> None:
    """``/community/sessions`` (operator), ``/markets/{id}/community-bids`` (members) and
    ``/markets/{id}/community/{participant}``."""
    from fastapi import Depends

    operator = Annotated[dict, Depends(role("operator"))]
    member = Annotated[dict, Depends(role("participant"))]
    reader = Annotated[dict, Depends(role("operator", "participant", "aggregator"))]

    @app.post("/community/sessions", status_code=201)
    def create_community_session(body: CommunitySessionBody, _: operator) -> dict:
        """Open a community session (the operator as the community's manager)."""
        return create(market, body)

    @app.post("/markets/{market_id}/community-bids", status_code=201)
    def community_bid(market_id: str, body: SignedCommunityBid, who: member) -> dict:
        """A member's signed bid: forecasts and assets, before the gate."""
        return bid(market, who, market_id,
                   SignedRecord(body.payload.model_dump(), body.signer, body.sig))

    @app.get("/markets/{market_id}/community/{participant}")
    def community_result(market_id: str, participant: str, who: reader) -> dict:
        """A member's schedule, asset plans and positions, and the community's prices."""
        return result(market, who, market_id, participant)
