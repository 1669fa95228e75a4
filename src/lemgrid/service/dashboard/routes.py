"""The dashboard's routes: the page, its assets, its JSON views and its public feed."""


import asyncio
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from lemgrid.service.dashboard import views
from lemgrid.service.feed import sse_response
from lemgrid.service.operator import Market, Refused

HERE = Path(__file__).parent
#: The dashboard's own files (``static/``) and their media types.
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@lru_cache(maxsize=1)
def _templates() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]))


@lru_cache(maxsize=1)
def plotly_js() -> bytes:
    """Plotly.js as bundled by the ``plotly`` Python package (MIT licence, see its
    ``LICENSE.txt``)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def microeur_to_eur(value: int) -> str:
    """µ€ as euros with cents for the page (``-1.23``)."""
    return f"{value / 1e6:.2f}"


def add_routes(app: FastAPI, market: Market, role: Callable) -> None:
    """Add the dashboard's routes; ``role(*allowed)`` is the app's authorisation dependency."""
    Own = Annotated[dict, Depends(role("participant", "aggregator"))]
    Staff = Annotated[dict, Depends(role("operator", "dso", "tso"))]
    grid_cache: dict[str, dict] = {}
    grid_lock = threading.Lock()

    def grid() -> dict:
        with grid_lock:
            if "view" not in grid_cache:
                grid_cache["view"] = views.grid_view(market)
            return grid_cache["view"]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        """The dashboard (public view; sign in with a key for one's own)."""
        snapshot = views.public_view(market)
        html = _templates().get_template("dashboard.html.j2").render(
            view=snapshot, log_key=market.ledger.operator_public_key_hex,
            eur=microeur_to_eur)
        return HTMLResponse(html)

    @app.get("/dashboard/static/plotly.min.js", include_in_schema=False)
    def plotly() -> Response:
        return Response(plotly_js(), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        path = HERE / "static" / name
        if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
            raise Refused(404, f"name: no dashboard file {name!r}")
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix])

    @app.get("/dashboard/api/public", tags=["dashboard"])
    def public() -> dict:
        """The market as anyone may see it: sessions, book depth, trades without names, local
        price, traffic light and flexibility without providers (no signature needed)."""
        return {**views.public_view(market), "log_key": market.ledger.operator_public_key_hex}

    @app.get("/dashboard/api/grid", tags=["dashboard"])
    async def grid_api() -> dict:
        """The feeder (bus coordinates, branches) and its power flow over the DSO's day:
        ``vm_pu`` [p.u.] per interval and bus, ``loading_percent`` [%] per interval and branch."""
        return await asyncio.to_thread(grid)

    @app.get("/dashboard/api/me", tags=["dashboard"])
    def me(who: Own) -> dict:
        """One's own orders (with their ledger positions), trades, schedule, statements,
        flexibility offers and activations (an aggregator's include its members')."""
        return views.participant_view(market, who)

    @app.get("/dashboard/api/operator", tags=["dashboard"])
    def operator(who: Staff) -> dict:
        """The operator's or the DSO's view: identities, sessions with their budget balance,
        traffic light, every offer and activation."""
        return views.operator_view(market, who)

    # Not in the OpenAPI (as the page and its assets): a stream that never ends is no operation
    # for the schema's fuzzers; docs/dashboard.md documents it.
    @app.get("/dashboard/feed", include_in_schema=False)
    async def public_feed(max_events: Annotated[int | None, Query(ge=1, le=10**6)] = None
                          ) -> StreamingResponse:
        """Server-Sent Events of the public view: the market's feed without participant,
        order or offer ids (no signature needed)."""
        return sse_response(market, max_events,
                            preamble="retry: 1000\n: lemgrid public feed\n\n",
                            select=views.public_event, keep_alive_s=15)
