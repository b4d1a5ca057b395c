"""Stratum V1 work as a miner sees it: jobs, headers, version rolling and the hash loop.

Pure functions, no I/O, so the pool and the tests can rebuild exactly what the miner hashed.

Byte orders (the usual Stratum V1 conventions):
- `prevhash` in mining.notify is the internal-order hash with every 4-byte word byte-swapped.
- merkle branch entries are hex of internal-order hashes.
- version, nbits and ntime are big-endian hex of the u32 values; the header stores them LE.
- the submitted nonce is big-endian hex of the u32 value; the header stores it LE.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

from hashquarry.chain.hashing import merkle_root_from_branch, sha256d
from hashquarry.chain.target import difficulty_to_target

# BIP 320 reserves these version bits for general-purpose (ASIC) rolling.
BIP320_VERSION_MASK = 0x1FFFE000
U32_MAX = 0xFFFFFFFF
NONCE_SPACE = 1 << 32

_U32_LE = struct.Struct("<I")


def _hex_field(value: Any, name: str, size: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"notify field {name!r} must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"notify field {name!r} is not valid hex: {value[:80]!r}") from None
    if size is not None and len(raw) != size:
        raise ValueError(f"notify field {name!r} must be {size} bytes, got {len(raw)}")
    return value.lower()


@dataclass(frozen=True)
class Job:
    """One mining.notify, plus what the client knew when it arrived.

    difficulty and the extranonces are carried by the job because set_difficulty and
    set_extranonce only take effect from the next notify: a share is judged by the
    state its job was issued under, not by whatever arrived since.
    """

    job_id: str
    prevhash: str  # notify form (word-swapped)
    coinb1: str
    coinb2: str
    merkle_branch: list[str]
    version: str
    nbits: str
    ntime: str
    clean: bool
    difficulty: float = 1.0
    extranonce1: bytes = b""
    extranonce2_size: int = 4
    received_at: float = field(default=0.0, compare=False)

    @classmethod
    def from_notify(cls, params: list[Any]) -> Job:
        if not isinstance(params, list):
            raise ValueError("notify params must be a list")
        if len(params) < 9:
            raise ValueError(f"notify needs 9 params, got {len(params)}")
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("notify field 'job_id' must be a non-empty string")
        if not isinstance(branch, list):
            raise ValueError("notify field 'merkle_branch' must be a list")
        if not isinstance(clean, bool):
            raise ValueError("notify field 'clean_jobs' must be a boolean")
        return cls(
            job_id=job_id,
            prevhash=_hex_field(prevhash, "prevhash", 32),
            coinb1=_hex_field(coinb1, "coinb1"),
            coinb2=_hex_field(coinb2, "coinb2"),
            merkle_branch=[_hex_field(h, f"merkle_branch[{i}]", 32) for i, h in enumerate(branch)],
            version=_hex_field(version, "version", 4),
            nbits=_hex_field(nbits, "nbits", 4),
            ntime=_hex_field(ntime, "ntime", 4),
            clean=clean,
        )

    @property
    def version_int(self) -> int:
        return int(self.version, 16)

    @property
    def nbits_int(self) -> int:
        return int(self.nbits, 16)

    @property
    def ntime_int(self) -> int:
        return int(self.ntime, 16)

    @property
    def share_target(self) -> int:
        return difficulty_to_target(self.difficulty)


def prevhash_from_notify(notify_hex: str) -> bytes:
    """Notify prevhash to the internal-order 32 bytes."""
    raw = bytes.fromhex(notify_hex)
    if len(raw) != 32:
        raise ValueError(f"prevhash must be 32 bytes, got {len(raw)}")
    return b"".join(raw[i : i + 4][::-1] for i in range(0, 32, 4))


def prevhash_to_notify(internal: bytes) -> str:
    """Internal-order prevhash to the notify form (the swap is its own inverse)."""
    if len(internal) != 32:
        raise ValueError(f"prevhash must be 32 bytes, got {len(internal)}")
    return b"".join(internal[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


def build_coinbase(job: Job, extranonce1: bytes, extranonce2: bytes) -> bytes:
    return bytes.fromhex(job.coinb1) + extranonce1 + extranonce2 + bytes.fromhex(job.coinb2)


def merkle_root_for(job: Job, coinbase: bytes) -> bytes:
    """Internal-order merkle root with the given coinbase in position 0."""
    return merkle_root_from_branch(sha256d(coinbase), [bytes.fromhex(h) for h in job.merkle_branch])


def header_prefix(job: Job, merkle: bytes, ntime: int, version: int) -> bytes:
    """The first 76 header bytes: everything except the nonce."""
    return (
        _U32_LE.pack(version & U32_MAX)
        + prevhash_from_notify(job.prevhash)
        + merkle
        + _U32_LE.pack(ntime & U32_MAX)
        + bytes.fromhex(job.nbits)[::-1]
    )


def build_header(
    job: Job, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int, version: int
) -> bytes:
    merkle = merkle_root_for(job, build_coinbase(job, extranonce1, extranonce2))
    return header_prefix(job, merkle, ntime, version) + _U32_LE.pack(nonce & U32_MAX)


# --- version rolling (BIP 310) ---


def roll_version(job_version: int, mask: int, bits: int) -> int:
    return (job_version & ~mask & U32_MAX) | (bits & mask)


def version_bits_hex(rolled_version: int, mask: int) -> str:
    """The 6th mining.submit param: only the bits the miner was allowed to change."""
    return f"{rolled_version & mask & U32_MAX:08x}"


def spread_bits(counter: int, mask: int) -> int:
    """Deposit the low bits of counter into the set bits of mask (a software PDEP).

    Lets the miner walk every version-bit combination the pool allows with a plain counter.
    """
    out = 0
    bit = 1
    m = mask & U32_MAX
    while m and counter:
        low = m & -m
        if counter & bit:
            out |= low
        m ^= low
        bit <<= 1
        if bit > counter:
            break
    return out


def mask_capacity(mask: int) -> int:
    """How many distinct version-bit patterns a mask allows."""
    return 1 << bin(mask & U32_MAX).count("1")


def u32_hex(value: int) -> str:
    """Big-endian hex of a u32, the form ntime and nonce take in mining.submit."""
    return f"{value & U32_MAX:08x}"


# --- hashing ---


def scan(header76: bytes, start_nonce: int, count: int, target: int) -> list[tuple[int, bytes]]:
    """Hash nonces [start_nonce, start_nonce+count) and return (nonce, hash) meeting target.

    The first 64 header bytes are one SHA-256 block that does not depend on the nonce, so
    it is compressed once and copied per nonce; only the 16-byte tail is hashed each time.
    Hashes are internal order; compared as little-endian integers, as consensus does.
    """
    if len(header76) != 76:
        raise ValueError(f"header prefix must be 76 bytes, got {len(header76)}")
    if start_nonce < 0 or count < 0:
        raise ValueError("nonce range must not be negative")
    end = min(start_nonce + count, NONCE_SPACE)
    sha = hashlib.sha256
    copy = sha(header76[:64]).copy
    tail = header76[64:]
    from_bytes = int.from_bytes
    found: list[tuple[int, bytes]] = []
    # Locals and map(pack, ...) keep the per-nonce work to C calls; this loop is the miner.
    for nonce_le in map(_U32_LE.pack, range(start_nonce, end)):
        h = copy()
        h.update(tail + nonce_le)
        digest = sha(h.digest()).digest()
        if from_bytes(digest, "little") <= target:
            found.append((from_bytes(nonce_le, "little"), digest))
    return found


def hashrate_from_shares(shares: float, difficulty: float, seconds: float) -> float:
    """Hashrate implied by shares at a difficulty: each diff-1 share costs 2**32 hashes."""
    if seconds <= 0:
        return 0.0
    return shares * difficulty * 2**32 / seconds
