"""SHA-256d and merkle trees, in Bitcoin's internal byte order.

Hashes are `bytes` in internal order (the order they are hashed in); the
hex shown by nodes and explorers is that order reversed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256


def py_sha256d(data: bytes) -> bytes:
    return _sha256(_sha256(data).digest()).digest()


def py_merkle_root_from_branch(coinbase_hash: bytes, branch: Sequence[bytes]) -> bytes:
    root = coinbase_hash
    for h in branch:
        root = py_sha256d(root + h)
    return root


try:
    # The C fold (chain/_sha256d.c): the same hashes without hashlib's per-call cost,
    # which was a third of the pool's CPU per share on a 12-level branch.
    from hashquarry.chain._sha256d import fold_branch as merkle_root_from_branch
    from hashquarry.chain._sha256d import sha256d
except ImportError:  # not built (no compiler or OpenSSL headers at install)
    NATIVE = False
    sha256d = py_sha256d
    # The root a miner's coinbase hash folds to through a Stratum merkle branch.
    merkle_root_from_branch = py_merkle_root_from_branch
else:
    NATIVE = True


def hash_from_hex(display_hex: str) -> bytes:
    """A node's display hex (txid, block hash) to internal order."""
    return bytes.fromhex(display_hex)[::-1]


def hash_to_hex(internal: bytes) -> str:
    """Internal order to the display hex nodes print."""
    return internal[::-1].hex()


def hash_to_int(internal: bytes) -> int:
    """The integer value compared against a target (little-endian)."""
    return int.from_bytes(internal, "little")


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Merkle root of transaction hashes (internal order), Bitcoin's odd-duplicate rule."""
    if not hashes:
        raise ValueError("merkle_root needs at least one hash")
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branch(non_coinbase_hashes: Sequence[bytes]) -> list[bytes]:
    """The branch that proves position 0 (the coinbase) given the other txids.

    A Stratum miner folds its coinbase hash through this list to get the root.
    """
    branch: list[bytes] = []
    # Position 0 is a placeholder for the coinbase; only its sibling path matters.
    level: list[bytes | None] = [None, *non_coinbase_hashes]
    while len(level) > 1:
        branch.append(level[1])  # type: ignore[arg-type]
        if len(level) % 2:
            level.append(level[-1])
        nxt: list[bytes | None] = [None]
        for i in range(2, len(level), 2):
            nxt.append(sha256d(level[i] + level[i + 1]))  # type: ignore[operator]
        level = nxt
    return branch
