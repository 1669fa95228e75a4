"""Merkle tree hashing, inclusion and consistency proofs as in RFC 9162 (CT version 2.0).

Hashing with domain separation (section 2.1.1): a leaf hashes as ``SHA-256(0x00 || data)``, an
interior node as ``SHA-256(0x01 || left || right)``, the empty tree as ``SHA-256()``. The tree
over n leaves splits at k, the largest power of two smaller than n (MTH). Inclusion proofs (audit
paths, section 2.1.3) and consistency proofs (section 2.1.4) are generated from the recursive
definitions of the RFC and verified with its iterative algorithms, which use nothing but the proof,
the sizes and the two hashes.

References
----------
.. [1] B. Laurie, E. Messeri, R. Stradling, "Certificate Transparency Version 2.0", RFC 9162,
   2021, sections 2.1.1-2.1.4.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256

#: MTH({}) = SHA-256 of the empty string.
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Leaf hash ``SHA-256(0x00 || data)`` (RFC 9162, 2.1.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash ``SHA-256(0x01 || left || right)`` (RFC 9162, 2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The roots of the perfect subtrees that make up a tree of any size: O(log n) memory.

    Enough to append leaves and compute the current root (the "frontier" of the tree), which is
    all the ledger's append path and its verifier need.
    """

    __slots__ = ("size", "_heights", "_hashes")

    def __init__(self) -> None:
        self.size = 0
        self._heights: list[int] = []
        self._hashes: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash; merges equal-height subtrees (amortised one node hash)."""
        heights, hashes = self._heights, self._hashes
        height = 0
        while heights and heights[-1] == height:
            heights.pop()
            leaf = node_hash(hashes.pop(), leaf)
            height += 1
        heights.append(height)
        hashes.append(leaf)
        self.size += 1

    def root(self) -> bytes:
        """MTH of all leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            result = node_hash(left, result)
        return result

    def snapshot(self) -> tuple[int, tuple[int, ...], tuple[bytes, ...]]:
        """An immutable copy of the state (to roll back a failed batch)."""
        return self.size, tuple(self._heights), tuple(self._hashes)

    def restore(self, snapshot: tuple[int, tuple[int, ...], tuple[bytes, ...]]) -> None:
        """Return to a state taken with :meth:`snapshot`."""
        self.size, heights, hashes = snapshot
        self._heights, self._hashes = list(heights), list(hashes)


class MerkleTree:
    """All levels of a Merkle tree over a list of leaf hashes, for roots and proofs of any size.

    Parameters
    ----------
    leaves : sequence of bytes
        Leaf hashes (already ``SHA-256(0x00 || data)``), in log order.
    """

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Append a leaf hash and complete every perfect subtree it closes."""
        levels = self._levels
        levels[0].append(leaf)
        height = 0
        while len(levels[height]) % 2 == 0:
            if len(levels) == height + 1:
                levels.append([])
            row = levels[height]
            levels[height + 1].append(node_hash(row[-2], row[-1]))
            height += 1

    def leaf(self, index: int) -> bytes:
        """Leaf hash at ``index`` (0-based)."""
        return self._levels[0][index]

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:  # a perfect, aligned subtree: stored
            return self._levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of the first ``size`` leaves (RFC 9162 2.1.3.1).

        Returns the sibling hashes from the leaf up to the root.
        """
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} outside a tree of size {size}")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_path(self, first: int, second: int | None = None) -> list[bytes]:
        """Consistency proof between tree sizes ``first`` and ``second`` (RFC 9162, 2.1.4.1)."""
        second = self.size if second is None else second
        self._check_size(second)
        if not 0 < first <= second:
            raise ValueError(f"consistency needs 0 < first <= second, got {first}, {second}")
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, complete) + [self._mth(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self._mth(lo, lo + k)]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} outside 0..{self.size}")


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    return compact.root()


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes],
                     root: bytes) -> bool:
    """Check an audit path (RFC 9162, 2.1.3.2).

    Parameters
    ----------
    leaf : bytes
        Leaf hash of the entry.
    index : int
        Leaf index (0-based).
    tree_size : int
        Number of leaves of the tree the root belongs to.
    path : sequence of bytes
        Audit path, from the leaf up.
    root : bytes
        Expected tree root (e.g. from a signed checkpoint).

    Returns
    -------
    bool
        True if the path proves that ``leaf`` is leaf ``index`` of the tree with this root.
    """
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: Sequence[bytes]) -> bool:
    """Check a consistency proof between two tree heads (RFC 9162, 2.1.4.2).

    Parameters
    ----------
    first, second : int
        Tree sizes, ``0 < first <= second``.
    first_root, second_root : bytes
        Their roots (e.g. from two signed checkpoints).
    path : sequence of bytes
        Consistency proof.

    Returns
    -------
    bool
        True if the tree of size ``second`` extends the tree of size ``first``.
    """
    if not 0 < first <= second:
        return False
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
