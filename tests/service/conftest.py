"""A market server on a simulated clock, driven through FastAPI's TestClient by signed clients."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key
from lemgrid.service.app import create_app

T0_MS = 1_780_000_000_000


@dataclass
class Clock:
    now_ms: int = T0_MS

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class World:
    url: str
    http: TestClient
    clock: Clock
    operator: MarketClient
    clients: dict[str, MarketClient] = field(default_factory=dict)

    def client(self, key=None) -> MarketClient:
        return MarketClient("", key or generate_key(), transport=self.http, clock_ms=self.clock)

    def join(self, name: str, role: str = "participant", meter: str | None = None,
             members: list[str] | None = None, sellable_wh: int | None = 50_000,
             intervals=(0,)) -> MarketClient:
        c = self.client()
        assert c.register(name, meter or f"meter-{name}", role, members).status_code == 201
        r = self.operator.request("POST", f"/identities/{name}/approve")
        assert r.status_code == 200, r.text
        if role == "participant" and sellable_wh is not None:
            for interval in intervals:
                r = self.operator.request("POST", "/capabilities", {
                    "participant": name, "interval": interval, "sellable_wh": sellable_wh})
                assert r.status_code == 201, r.text
        self.clients[name] = c
        return c

    def session(self, market_id: str, interval: int = 0, gate_in_ms: int = 900_000,
                mechanism: str = "uniform") -> None:
        r = self.operator.request("POST", "/sessions", {
            "market_id": market_id, "interval": interval,
            "gate_ms": self.clock.now_ms + gate_in_ms, "mechanism": mechanism})
        assert r.status_code == 201, r.text

    def stored(self, *tables) -> tuple:
        """Ledger size and the row counts of ``tables``: what a refused request must not
        change."""
        import sqlalchemy as sa

        m = self.http.app.state.market
        with m.engine.connect() as conn:
            return m.ledger.size, tuple(
                conn.execute(sa.select(sa.func.count()).select_from(x)).scalar()
                for x in tables)

    def close(self, market_id: str) -> None:
        self.clock.now_ms = max(self.clock.now_ms, self.operator.get(
            f"/sessions/{market_id}").json()["gate_ms"])
        r = self.operator.request("POST", "/admin/tick")
        assert r.status_code == 200 and market_id in r.json()["settled"], r.text


def make_world(url: str, spec=None) -> World:
    clock = Clock()
    operator_key = generate_key()
    app = create_app(url, operator_key, clock_ms=clock, spec=spec)
    http = TestClient(app)
    operator = MarketClient("", operator_key, transport=http, clock_ms=clock)
    operator.participant = "operator"
    return World(url, http, clock, operator)


def join_grid_parties(world: World, ids: list[str], providers: list[str]) -> None:
    """Register the scenario's households (meter = id), the aggregators named as flexibility
    providers with their members (``world.members``), the DSO and the TSO."""
    world.members = {}
    for who in ids:
        world.join(who, meter=who, sellable_wh=None)
    for agg in sorted(set(providers) - set(ids)):
        world.members[agg] = [w for w, p in zip(ids, providers) if p == agg]
        world.join(agg, role="aggregator", meter=agg, members=world.members[agg])
    world.join("dso", role="dso", meter="-")
    world.join("tso", role="tso", meter="-")


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on loopback for the whole test session."""
    from lemgrid.service.pgtest import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """The same API tests on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'market.db'}"
    from lemgrid.service.pgtest import fresh_database

    server = request.getfixturevalue("postgres")
    return fresh_database(server, f"t{abs(hash(request.node.nodeid)) % 10**12}")


@pytest.fixture
def world(db_url) -> World:
    w = make_world(db_url)
    yield w
    w.http.close()
    w.http.app.state.market.close()
