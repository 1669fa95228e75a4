"""Ed25519 signature checks of the market server, off its event loop.

Each order request carries two signatures (the request's and the order record's), and verifying
one costs the server about as much CPU as the rest of the order's handling together. Python
threads cannot take that work off the event loop's core: a thread must take the interpreter lock
again after each verification, and waits for it while the loop is busy. :class:`Verifier`
therefore sends the signatures to a helper process (``python -m lemgrid.service.verifier``)
in batches over a pipe: while one batch is being checked, the next collects, so one exchange
serves as many requests as arrived meanwhile.

The helper runs the same check as the server would (:func:`lemgrid.ledger.identity.
signature_valid` on the same key, signature and message); a signature that is not in its one
canonical hex spelling is refused before it is sent. If the helper dies, the server verifies on
its own thread again (and says so in its log).

Frames on the pipe (little-endian): a request is ``u32 length`` then, per item, the raw public
key (32 bytes), the raw signature (64 bytes), ``u32`` message length and the message; the
answer is ``u32 count`` then one byte per item (1: valid).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from nacl.signing import VerifyKey

from lemgrid.ledger.identity import signature_valid

#: One item: raw public key (32 bytes), signature (128 lowercase hex digits), message.
Item = tuple[bytes, str, bytes]

#: At most this many signatures go into one exchange with the helper.
MAX_BATCH = 2048

_U32 = struct.Struct("<I")
_LOG = logging.getLogger("lemgrid.service")


def canonical_signature(signature_hex: str) -> bytes | None:
    """The 64 raw bytes of a signature in its one canonical spelling (128 lowercase hex
    digits), or None (such a signature never verifies: see ``signature_valid``)."""
    try:
        raw = bytes.fromhex(signature_hex)
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == 64 and raw.hex() == signature_hex else None


def verify_items(items: Sequence[Item]) -> list[bool]:
    """Check signatures here, on the calling thread."""
    return [len(pk) == 32 and signature_valid(VerifyKey(pk), sig, message)
            for pk, sig, message in items]


def _encode(items: Sequence[tuple[bytes, bytes, bytes]]) -> bytes:
    parts = []
    for pk, sig, message in items:
        parts += [pk, sig, _U32.pack(len(message)), message]
    body = b"".join(parts)
    return _U32.pack(len(body)) + body


def _serve(stdin: Any, stdout: Any) -> None:
    """The helper: answer frames from ``stdin`` on ``stdout`` until end of input."""
    keys: dict[bytes, VerifyKey] = {}
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        (length,) = _U32.unpack(head)
        body = stdin.read(length)
        if len(body) < length:
            return
        out, at = bytearray(), 0
        while at < length:
            pk, sig = body[at:at + 32], body[at + 32:at + 96]
            (n,) = _U32.unpack_from(body, at + 96)
            message = body[at + 100:at + 100 + n]
            at += 100 + n
            key = keys.get(pk)
            if key is None:
                if len(keys) > 100_000:
                    keys.clear()
                key = keys[pk] = VerifyKey(pk)
            out.append(signature_valid(key, sig.hex(), message))
        stdout.write(_U32.pack(len(out)) + bytes(out))
        stdout.flush()


class Verifier:
    """Batches of signature checks sent to a helper process (see the module's docstring).

    Parameters
    ----------
    helper : bool
        Start the helper process; False checks every signature on the event loop's thread.
    """

    def __init__(self, helper: bool = True) -> None:
        self._proc: subprocess.Popen | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: collections.deque[tuple[list[Item], asyncio.Future]] = collections.deque()
        self._in_flight: list[tuple[list[Item], asyncio.Future]] | None = None
        self._buffer = bytearray()
        if helper:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "lemgrid.service.verifier"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, bufsize=0, close_fds=True)
            os.set_blocking(self._proc.stdout.fileno(), False)  # type: ignore[union-attr]

    @property
    def helper_pid(self) -> int | None:
        """The helper process's id (None without one)."""
        return None if self._proc is None else self._proc.pid

    async def verify(self, items: list[Item]) -> list[bool]:
        """Whether each ``(raw public key, signature hex, message)`` verifies."""
        if self._proc is not None and self._proc.poll() is not None:
            # Its end of the pipe may not read as closed yet (or ever, if a process forked
            # meanwhile holds a copy of it): an exited helper is noticed here too.
            self._fail_over(f"it exited with status {self._proc.returncode}")
        if self._proc is None:
            return verify_items(items)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._attach(loop)
        future: asyncio.Future = loop.create_future()
        self._waiting.append((items, future))
        if self._in_flight is None:
            self._send()
        return await future

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the helper's answers on this loop (a test client may run several loops)."""
        assert self._proc is not None and self._proc.stdout is not None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._proc.stdout.fileno())
        self._in_flight, self._buffer = None, bytearray()
        self._loop = loop
        loop.add_reader(self._proc.stdout.fileno(), self._on_answer)

    def _send(self) -> None:
        batch: list[tuple[list[Item], asyncio.Future]] = []
        wire: list[tuple[bytes, bytes, bytes]] = []
        while self._waiting and len(wire) < MAX_BATCH:
            items, future = self._waiting.popleft()
            batch.append((items, future))
            for pk, sig, message in items:
                raw = canonical_signature(sig)
                # A malformed signature or key is refused here: the helper checks the same
                # thing on a zeroed signature, which never verifies.
                wire.append((pk if len(pk) == 32 else bytes(32),
                             raw if raw is not None else bytes(64), message))
        if not batch:
            return
        self._in_flight = batch
        try:
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(_encode(wire))
        except (OSError, ValueError) as exc:
            self._fail_over(f"cannot write to it ({exc})")

    def _on_answer(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            chunk = os.read(self._proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail_over(f"cannot read from it ({exc})")
            return
        if not chunk:
            self._fail_over("it exited")
            return
        self._buffer += chunk
        if len(self._buffer) < 4:
            return
        (count,) = _U32.unpack_from(self._buffer)
        if len(self._buffer) < 4 + count:
            return
        answers, self._buffer = bytes(self._buffer[4:4 + count]), self._buffer[4 + count:]
        batch, self._in_flight = self._in_flight or [], None
        at = 0
        for items, future in batch:
            oks = [answers[at + i] == 1
                   and canonical_signature(items[i][1]) is not None and len(items[i][0]) == 32
                   for i in range(len(items))]
            at += len(items)
            if not future.done():
                future.set_result(oks)
        if self._waiting:
            self._send()

    def _fail_over(self, why: str) -> None:
        """Verify here from now on: the helper is gone."""
        _LOG.warning("signature helper process: %s; verifying on the server's thread", why)
        proc, self._proc = self._proc, None
        if proc is not None:
            if self._loop is not None and not self._loop.is_closed() and proc.stdout:
                self._loop.remove_reader(proc.stdout.fileno())
            proc.kill()
            proc.wait()
            _close_pipes(proc)
        pending = [*(self._in_flight or []), *self._waiting]
        self._in_flight, self._waiting = None, collections.deque()
        for items, future in pending:
            if not future.done():
                future.set_result(verify_items(items))

    def close(self) -> None:
        """Stop the helper process."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._loop is not None and not self._loop.is_closed() and proc.stdout:
            self._loop.remove_reader(proc.stdout.fileno())
        if proc.stdin:
            with contextlib.suppress(OSError):  # a helper that died leaves a broken pipe
                proc.stdin.close()  # the helper's end of input: it returns
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe:
            with contextlib.suppress(OSError):  # a helper that died leaves a broken pipe
                pipe.close()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
