"""``lemgrid simulate --via-server [URL]``: the simulation's agents trade through a server
(:mod:`lemgrid.service.via_server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lemgrid.cli._app import console, progress_bar


def run_via_server(loaded: Any, design: str | None, url: str | None,
                   operator_key: Path | None, quiet: bool) -> Any:
    """Run the simulation with its order clearing done by the server at ``url`` (None: one in
    this process); prints what went over the wire."""
    from lemgrid.errors import InputError
    from lemgrid.ledger.identity import load_private_key
    from lemgrid.service.via_server import simulate_via_server
    from lemgrid.sim.runner import resolve_design

    if url is None:
        if operator_key is not None:
            raise InputError("--operator-key: only with --server URL (the in-process server "
                             "makes its own)")
        target, key = None, None
    else:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--server: {url!r} is not an http(s) URL")
        if operator_key is None:
            raise InputError("--operator-key: needed with --server URL")
        target, key = url, load_private_key(operator_key)
    name = resolve_design(loaded, design)
    with progress_bar(f"{name} via server: days", quiet) as progress:
        result, clearing = simulate_via_server(loaded, name, url=target, operator_key=key,
                                               progress=progress)
    if not quiet:
        console.print(f"through {'an in-process server' if target is None else target}: "
                      f"{len(clearing.agents)} agents with their own keys, {clearing.calls} "
                      f"clearings, {clearing.n_requests} signed requests")
    return result
