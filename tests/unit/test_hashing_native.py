"""The C SHA-256d (chain/_sha256d.c) against hashlib: same hashes, clear errors.

The real-block tests (test_real_blocks.py) go through whichever implementation is in use;
these compare the two directly, on real blocks and on arbitrary input.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashquarry.chain import hashing
from hashquarry.chain.hashing import hash_from_hex, hash_to_hex, merkle_branch

from .test_real_blocks import HEADERS, MERKLE_BLOCKS, serialize_header

try:
    from hashquarry.chain import _sha256d as ext
except ImportError:
    ext = None  # type: ignore[assignment]


def test_ci_builds_the_extension() -> None:
    # CI installs a compiler and OpenSSL's headers: there the fallback must not hide a
    # broken build (it would only show as a slower pool).
    if os.environ.get("CI"):
        assert ext is not None, "hashquarry.chain._sha256d was not built"
    assert (ext is not None) == hashing.NATIVE


def _ext() -> Any:
    if ext is None:
        pytest.skip("hashquarry.chain._sha256d not built")
    return ext


@pytest.mark.parametrize("h", HEADERS[:20], ids=lambda h: str(h["height"]))
def test_real_headers_hash_to_their_block_hash(h: dict[str, Any]) -> None:
    raw = serialize_header(h)
    assert hash_to_hex(_ext().sha256d(raw)) == h["hash"] == hash_to_hex(hashing.py_sha256d(raw))


@pytest.mark.parametrize("block", MERKLE_BLOCKS, ids=lambda b: str(b["height"]))
def test_real_coinbase_branches_fold_to_the_block_root(block: dict[str, Any]) -> None:
    txids = [hash_from_hex(t) for t in block["txids"]]
    branch = merkle_branch(txids[1:])
    for b in (branch, tuple(branch)):
        root = _ext().fold_branch(txids[0], b)
        assert hash_to_hex(root) == block["merkle_root"]
    assert root == hashing.py_merkle_root_from_branch(txids[0], branch)


@given(st.binary(max_size=300))
def test_sha256d_matches_hashlib(data: bytes) -> None:
    assert _ext().sha256d(data) == hashing.py_sha256d(data)
    assert _ext().sha256d(bytearray(data)) == hashing.py_sha256d(data)
    assert _ext().sha256d(memoryview(data)) == hashing.py_sha256d(data)


@given(
    st.binary(min_size=32, max_size=32), st.lists(st.binary(min_size=32, max_size=32), max_size=14)
)
def test_fold_matches_hashlib(first: bytes, branch: list[bytes]) -> None:
    assert _ext().fold_branch(first, branch) == hashing.py_merkle_root_from_branch(first, branch)


def test_bad_input_says_what_is_wrong() -> None:
    ext = _ext()
    with pytest.raises(ValueError, match="first hash must be 32 bytes, got 31"):
        ext.fold_branch(b"\0" * 31, [])
    with pytest.raises(ValueError, match=r"branch\[1\] must be 32 bytes"):
        ext.fold_branch(b"\0" * 32, [b"\1" * 32, b"\2" * 33])
    with pytest.raises(ValueError, match=r"branch\[0\] must be 32 bytes"):
        ext.fold_branch(b"\0" * 32, ["not bytes"])
    with pytest.raises(TypeError, match="branch must be a sequence"):
        ext.fold_branch(b"\0" * 32, 5)
    with pytest.raises(TypeError):
        ext.sha256d("text")
