"""A `lemgrid serve` subprocess on a loopback port, for tests that need a real server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``lemgrid serve --db URL`` on 127.0.0.1; :meth:`kill` sends SIGKILL."""

    def __init__(self, db_url: str, key_path: Path, port: int | None = None,
                 tick_s: float = 0.05) -> None:
        self.db_url, self.key_path = db_url, key_path
        self.port = port or free_port()
        self.tick_s = tick_s
        self.proc: subprocess.Popen | None = None
        self.log_path = key_path.with_name("server.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> LiveServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lemgrid.cli", "serve", "--db", self.db_url, "--port",
             str(self.port), "--operator-key", str(self.key_path), "--tick-s", str(self.tick_s)],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lemgrid serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("lemgrid serve did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class ThreadServer:
    """An app served by uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
