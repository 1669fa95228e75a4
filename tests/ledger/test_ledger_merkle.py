"""RFC 9162 Merkle tree: published test vectors, pymerkle as an independent implementation,
and property tests over random trees (every inclusion, every consistency, tampered proofs fail)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from lemgrid.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# The eight leaves and roots of the Certificate Transparency reference test vectors (RFC 6962
# tree, identical in RFC 9162), as published in the certificate-transparency project's tests.
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATH_LEAF0_SIZE8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def _pymerkle(data: list[bytes]) -> InmemoryTree:
    # Default pymerkle settings are RFC 9162 hashing: SHA-256 with 0x00 / 0x01 prefixes.
    tree = InmemoryTree(algorithm="sha256")
    for d in data:
        tree.append_entry(d)
    return tree


def test_hashing_has_rfc9162_domain_separation():
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT == CompactRange().root()


def test_ct_reference_vectors():
    tree = MerkleTree([leaf_hash(d) for d in CT_LEAVES])
    assert [tree.root(n).hex() for n in range(1, 9)] == CT_ROOTS
    assert [h.hex() for h in tree.inclusion_path(0, 8)] == CT_PATH_LEAF0_SIZE8
    assert verify_inclusion(leaf_hash(CT_LEAVES[0]), 0, 8,
                            [bytes.fromhex(h) for h in CT_PATH_LEAF0_SIZE8],
                            bytes.fromhex(CT_ROOTS[7]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_roots_and_inclusion_paths_match_pymerkle(data):
    ours, ref = MerkleTree([leaf_hash(d) for d in data]), _pymerkle(data)
    compact = CompactRange()
    for n, d in enumerate(data, 1):
        compact.append(leaf_hash(d))
        assert compact.root() == ours.root(n) == ref.get_root(n)
    n = len(data)
    for i in range(n):
        # pymerkle's path starts with the leaf itself, then the RFC audit path bottom-up.
        assert ours.inclusion_path(i, n) == ref.prove_inclusion(i + 1, n).path[1:]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.data())
def test_every_inclusion_and_every_consistency_verifies(n, data):
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    tree, ref = MerkleTree(leaves), _pymerkle([i.to_bytes(4, "big") for i in range(n)])
    for size in range(1, n + 1):
        root = ref.get_root(size)  # roots from the independent implementation
        for i in range(size):
            assert verify_inclusion(leaves[i], i, size, tree.inclusion_path(i, size), root)
        for first in range(1, size + 1):
            path = tree.consistency_path(first, size)
            assert verify_consistency(first, size, ref.get_root(first), root, path)
    # and pymerkle's own consistency proofs accept our roots
    first = data.draw(st.integers(1, n))
    ref.prove_consistency(first, n).verify(tree.root(first), tree.root(n))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 64), st.data())
def test_tampered_inclusion_proofs_fail(n, data):
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    tree = MerkleTree(leaves)
    size = data.draw(st.integers(2, n))
    i = data.draw(st.integers(0, size - 1))
    root, path = tree.root(size), tree.inclusion_path(i, size)
    assert verify_inclusion(leaves[i], i, size, path, root)
    j = data.draw(st.integers(0, len(path) - 1))
    flipped = path[:j] + [bytes([path[j][0] ^ 1]) + path[j][1:]] + path[j + 1:]
    assert not verify_inclusion(leaves[i], i, size, flipped, root)
    assert not verify_inclusion(leaves[(i + 1) % size], i, size, path, root)  # other leaf
    other = data.draw(st.integers(0, size - 1).filter(lambda k: k != i))
    assert not verify_inclusion(leaves[i], other, size, path, root)  # wrong position
    assert not verify_inclusion(leaves[i], i, size, path[:-1], root)  # truncated path
    assert not verify_inclusion(leaves[i], i, size, path + [root], root)  # extended path
    assert not verify_inclusion(leaves[i], i, size, path, tree.root(size - 1))  # other root
    assert not verify_inclusion(leaves[i], size, size, path, root)  # index out of range


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 64), st.data())
def test_tampered_consistency_proofs_fail(n, data):
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    tree = MerkleTree(leaves)
    second = data.draw(st.integers(2, n))
    first = data.draw(st.integers(1, second - 1))
    r1, r2 = tree.root(first), tree.root(second)
    path = tree.consistency_path(first, second)
    assert verify_consistency(first, second, r1, r2, path)
    j = data.draw(st.integers(0, len(path) - 1))
    flipped = path[:j] + [bytes([path[j][0] ^ 0x80]) + path[j][1:]] + path[j + 1:]
    assert not verify_consistency(first, second, r1, r2, flipped)
    assert not verify_consistency(first, second, r1, r2, path[:-1])
    assert not verify_consistency(first, second, r1, r2, path + [r1])
    # A forked history: the same sizes, a different first tree.
    forked = MerkleTree([leaf_hash(b"fork")] + leaves[1:])
    assert not verify_consistency(first, second, forked.root(first), r2, path)
    assert not verify_consistency(first, second, r1, forked.root(second), path)


def test_consistency_edge_cases():
    tree = MerkleTree([leaf_hash(bytes([i])) for i in range(5)])
    assert tree.consistency_path(3, 3) == []
    assert verify_consistency(3, 3, tree.root(3), tree.root(3), [])
    assert not verify_consistency(3, 3, tree.root(3), tree.root(4), [])
    assert not verify_consistency(0, 3, EMPTY_ROOT, tree.root(3), [])
    assert not verify_consistency(4, 3, tree.root(4), tree.root(3), [])
    with pytest.raises(ValueError):
        tree.consistency_path(0, 3)
    with pytest.raises(ValueError):
        tree.inclusion_path(5, 5)
    assert root_of([]) == EMPTY_ROOT


def test_compact_range_snapshot_restores():
    compact = CompactRange()
    for i in range(5):
        compact.append(leaf_hash(bytes([i])))
    snap, root = compact.snapshot(), compact.root()
    for i in range(7):
        compact.append(leaf_hash(bytes([i])))
    compact.restore(snap)
    assert compact.size == 5 and compact.root() == root
