"""Server-Sent Events of a market's feed (the API's ``/feed`` and the dashboard's public one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from lemgrid.service.operator import Market


def sse_response(market: Market, max_events: int | None, *, preamble: str,
                 select: Callable[[dict], dict | None] = lambda event: event,
                 keep_alive_s: float | None = None) -> StreamingResponse:
    """Stream the market's events as Server-Sent Events until ``max_events`` have been sent.

    Parameters
    ----------
    market : Market
        Whose events (each a dict with an ``event`` name) are streamed.
    max_events : int, optional
        Stop after this many events (None: until the client goes away).
    preamble : str
        Sent first (SSE fields or comments, ending with a blank line).
    select : callable
        What of an event the stream shows; None leaves the event out.
    keep_alive_s : float, optional
        Send a comment after this long without an event, so idle proxies keep the connection.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict] = asyncio.Queue()

    def send(event: dict) -> None:
        shown = select(event)
        if shown is not None:
            loop.call_soon_threadsafe(queue.put_nowait, shown)

    market.subscribers.append(send)

    async def stream() -> AsyncIterator[str]:
        try:
            yield preamble
            n = 0
            while max_events is None or n < max_events:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=keep_alive_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event['event']}\ndata: {json.dumps(event)}\n\n"
                n += 1
        finally:
            market.subscribers.remove(send)

    return StreamingResponse(stream(), media_type="text/event-stream")
