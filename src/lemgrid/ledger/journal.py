"""Undo journal for the ledger's in-memory state, and the rejection raised by its rules.

Appending a batch must be all-or-nothing: the rules mutate the in-memory state record by record,
and if any record is rejected every mutation of the batch is undone before the error leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from lemgrid.errors import InputError

_MISSING = object()


class Rejection(InputError):
    """A record that breaks a ledger rule (bad signature, replay, revoked key, double spend, ...).

    Parameters
    ----------
    reason : str
        Human-readable reason; the caller prefixes the record or entry position.
    code : str
        Short machine-readable code (``bad-signature``, ``replay``, ``revoked-key``,
        ``double-spend``, ``reveal-mismatch``, ...).
    soft : bool
        True if the ledger records the rejection as an entry instead of failing the batch
        (only mismatching reveals, as the sealed-bid protocol requires).
    """

    def __init__(self, reason: str, code: str = "rule", soft: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.soft = soft
        #: Position of the offending record in its batch, once known.
        self.index: int | None = None

    def at(self, index: int, kind: str | None = None) -> Rejection:
        """The same rejection, located: the message starts with ``record i (kind)``."""
        label = f"record {index}" + (f" ({kind})" if kind else "")
        located = Rejection(f"{label}: {self.reason}", self.code, self.soft)
        located.reason, located.index = self.reason, index
        return located


class Journal:
    """Records the inverse of each state change while a transaction is open."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], Any]] | None = None

    def begin(self) -> None:
        """Start recording inverses."""
        self._undo = []

    def commit(self) -> None:
        """Forget the recorded inverses (the changes stay)."""
        self._undo = None

    def rollback(self) -> None:
        """Undo every change since :meth:`begin`, newest first."""
        undo, self._undo = self._undo or [], None
        for step in reversed(undo):
            step()

    def add(self, items: set, item: Hashable) -> None:
        """Add a new member to a set (the caller has checked it is absent)."""
        items.add(item)
        if self._undo is not None:
            self._undo.append(lambda: items.discard(item))

    def put(self, mapping: dict, key: Hashable, value: Any) -> None:
        """Set ``mapping[key] = value``."""
        old = mapping.get(key, _MISSING)
        mapping[key] = value
        if self._undo is not None:
            if old is _MISSING:
                self._undo.append(lambda: mapping.pop(key, None))
            else:
                self._undo.append(lambda: mapping.__setitem__(key, old))

    def inc(self, mapping: dict, key: Hashable, delta: int) -> None:
        """Add ``delta`` to ``mapping[key]`` (missing counts as 0)."""
        self.put(mapping, key, mapping.get(key, 0) + delta)

    def append(self, items: list, item: Any) -> None:
        """Append to a list."""
        items.append(item)
        if self._undo is not None:
            self._undo.append(items.pop)
