"""A throwaway EVM JSON-RPC node for tests: Hardhat's node (npm) on a loopback port.

``scripts/ensure-test-services.sh`` installs it into :func:`node_dir` (npm package ``hardhat``,
the version pinned there). :func:`evm_node` starts ``hardhat node`` on a free loopback port, waits
until it answers JSON-RPC and stops it afterwards. The node mines each transaction at once and
unlocks 20 funded accounts, so :mod:`lemgrid.ledger.chain` uses it like any node.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: Environment variable naming the directory Hardhat is installed in.
NODE_DIR_ENV = "LEMGRID_EVM_NODE_DIR"


def node_dir() -> Path:
    """Where ``scripts/ensure-test-services.sh`` installs Hardhat."""
    default = Path.home() / ".cache" / "lemgrid" / "evm-node"
    return Path(os.environ.get(NODE_DIR_ENV) or default)


def hardhat_bin() -> Path | None:
    """The installed ``hardhat`` command, or None."""
    path = node_dir() / "node_modules" / ".bin" / "hardhat"
    return path if path.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chain_id(url: str) -> int | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                       "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(json.loads(response.read())["result"], 16)
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def evm_node(timeout_s: float = 120.0) -> Iterator[str]:
    """Run Hardhat's node on loopback; yields its JSON-RPC URL.

    Raises
    ------
    RuntimeError
        If Hardhat is not installed (run ``scripts/ensure-test-services.sh``) or the node does
        not answer within ``timeout_s``.
    """
    command = hardhat_bin()
    if command is None:
        raise RuntimeError(f"Hardhat is not installed in {node_dir()}: run "
                           "scripts/ensure-test-services.sh")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (node_dir() / f"node-{port}.log").open("wb")
    process = subprocess.Popen([str(command), "node", "--hostname", "127.0.0.1", "--port",
                                str(port)], cwd=node_dir(), stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ,
                                                              "HARDHAT_DISABLE_TELEMETRY_PROMPT":
                                                              "true"})
    try:
        deadline = time.monotonic() + timeout_s
        while _chain_id(url) is None:
            if process.poll() is not None:
                raise RuntimeError(f"hardhat node exited with {process.returncode}; see "
                                   f"{log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hardhat node did not answer on {url} within "
                                   f"{timeout_s:g} s; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
