"""A static getblocktemplate answer with thousands of transactions, for a long merkle branch.

The difficulty-1 node has no coins, so it cannot fill a template with transactions;
the pool is instead pointed at this file (`node.static_template`). The transactions
are well formed (version, one input, two P2PKH outputs, locktime, correct varints) so
everything the pool does with them (hashing, block assembly) is what it does with
real ones; their inputs spend nothing that exists, which does not matter because at
the difficulty-1 target no share ever becomes a block.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from hashquarry.chain.encoding import varint
from hashquarry.chain.hashing import sha256d

DIFFICULTY1_BITS = "1d00ffff"
DIFFICULTY1_TARGET = "00000000ffff0000000000000000000000000000000000000000000000000000"
SUBSIDY = 50 * 100_000_000
FEE = 500


def bench_transaction(seed: int) -> bytes:
    """One P2PKH-shaped transaction, distinct per seed (about 226 bytes)."""
    prevout = sha256d(b"hashquarry-bench-prevout-%d" % seed)
    # <71-byte signature> <33-byte compressed key>, the shape of a real P2PKH spend.
    sig = b"\x30\x44" + sha256d(b"r%d" % seed) + sha256d(b"s%d" % seed) + bytes(4) + b"\x41"
    pubkey = b"\x02" + sha256d(b"key-%d" % seed)
    script_sig = bytes([len(sig)]) + sig + bytes([len(pubkey)]) + pubkey
    outputs = b""
    for i in range(2):
        pkh = sha256d(b"out-%d-%d" % (seed, i))[:20]
        spk = b"\x76\xa9\x14" + pkh + b"\x88\xac"
        outputs += (10_000 + seed + i).to_bytes(8, "little") + varint(len(spk)) + spk
    return (
        (1).to_bytes(4, "little")
        + varint(1)
        + prevout
        + (seed % 3).to_bytes(4, "little")
        + varint(len(script_sig))
        + script_sig
        + b"\xff\xff\xff\xff"
        + varint(2)
        + outputs
        + (0).to_bytes(4, "little")
    )


def static_template(
    n_tx: int = 4000,
    *,
    prev_hash: str = "00" * 32,
    height: int = 1,
    curtime: int | None = None,
    bits: str = DIFFICULTY1_BITS,
    target: str = DIFFICULTY1_TARGET,
) -> dict[str, Any]:
    """A getblocktemplate-shaped dict; `prev_hash` is display hex."""
    now = int(time.time()) if curtime is None else curtime
    txs = []
    for seed in range(n_tx):
        data = bench_transaction(seed)
        txid = sha256d(data)[::-1].hex()
        txs.append({
            "data": data.hex(), "txid": txid, "hash": txid, "depends": [], "fee": FEE,
            "sigops": 2, "size": len(data),
        })  # fmt: skip
    return {
        "capabilities": ["proposal"],
        "version": 0x20000000,
        "previousblockhash": prev_hash,
        "transactions": txs,
        "coinbaseaux": {"flags": ""},
        "coinbasevalue": SUBSIDY + FEE * n_tx,
        "longpollid": prev_hash + "bench",
        "target": target,
        "mintime": now - 3600,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 20000 * max(1, n_tx // 1000),
        "sizelimit": 32_000_000,
        "curtime": now,
        "bits": bits,
        "height": height,
    }


def branch_length(n_tx: int) -> int:
    """Merkle branch length a template with n_tx non-coinbase transactions gives."""
    # n_tx + 1 leaves (with the coinbase) need ceil(log2(n_tx + 1)) levels.
    return n_tx.bit_length()


def write_static_template(path: Path, n_tx: int = 4000, **kw: Any) -> Path:
    path.write_bytes(orjson.dumps(static_template(n_tx, **kw)))
    return path
