"""Valid shares made ahead of time, so the load generator does not hash while it measures.

A share at difficulty d costs about d * 2**32 hashes to find. At the 1e-6 that the
pool's default minimum allows that is ~4,300 hashes, ~4 ms of pure-Python hashing per
share (about 270 shares/s per core): a 10 s run at 30,000 shares/s would need half an
hour of precompute. The pool's cost of checking a share does not depend on its
difficulty (one coinbase hash, the merkle branch, one header hash either way), so the
bench asks for 1e-9 by default (~4 hashes per share) and the figure stays honest.

Within one job the coinbase, and so the merkle root, depends only on extranonce2; shares
walk the nonce space of one extranonce2 and move to the next one only when it runs out,
so the merkle branch is folded once per 2**32 nonces instead of once per share. Every
(extranonce2, nonce) pair is used once, so no two shares of a connection are duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hashquarry.miner.work import (
    NONCE_SPACE,
    Job,
    build_coinbase,
    header_prefix,
    merkle_root_for,
    scan,
)


@dataclass(frozen=True, slots=True)
class Share:
    job_id: str
    extranonce2: str  # hex, as mining.submit carries it
    ntime: str
    nonce: str
    hash: bytes  # internal order; compare as a little-endian integer

    @property
    def hash_value(self) -> int:
        return int.from_bytes(self.hash, "little")

    @property
    def block_hash_hex(self) -> str:
        """Display order, as the node names the block if this share solves one."""
        return self.hash[::-1].hex()


def expected_hashes(target: int) -> float:
    """Mean number of hashes until one is <= target."""
    return float(1 << 256) / (target + 1)


class ShareMaker:
    """Shares for one connection's job: its extranonce1, that job, one share target."""

    __slots__ = ("_prefix", "extranonce1", "extranonce2", "hashes", "job", "next_nonce", "target")

    def __init__(
        self, job: Job, extranonce1: bytes, target: int, *, extranonce2_start: int = 0
    ) -> None:
        if job.extranonce2_size < 1:
            raise ValueError("the job has no extranonce2 to roll")
        self.job = job
        self.extranonce1 = extranonce1
        self.target = target
        self.extranonce2 = extranonce2_start
        self.next_nonce = 0
        self.hashes = 0
        self._prefix: bytes | None = None

    def _roll(self) -> bytes:
        size = self.job.extranonce2_size
        if self.extranonce2 >= 1 << (8 * size):
            raise ValueError("extranonce2 space exhausted")
        en2 = self.extranonce2.to_bytes(size, "big")
        merkle = merkle_root_for(self.job, build_coinbase(self.job, self.extranonce1, en2))
        self._prefix = header_prefix(self.job, merkle, self.job.ntime_int, self.job.version_int)
        return self._prefix

    def make(self, count: int, target: int | None = None) -> list[Share]:
        """`count` new shares; with `target`, shares that also meet it (e.g. a block)."""
        want = self.target if target is None else min(target, self.target)
        per_share = expected_hashes(want)
        job = self.job
        out: list[Share] = []
        while len(out) < count:
            prefix = self._prefix or self._roll()
            # Enough nonces for the rest with some slack; the leftovers are not wasted
            # because next_nonce restarts right after the last share taken.
            chunk = int((count - len(out)) * per_share * 1.3) + 16
            chunk = min(chunk, 1 << 20, NONCE_SPACE - self.next_nonce)
            start = self.next_nonce
            found = scan(prefix, start, chunk, want)
            self.next_nonce = start + chunk
            en2_hex = self.extranonce2.to_bytes(job.extranonce2_size, "big").hex()
            for nonce, digest in found:
                out.append(Share(job.job_id, en2_hex, job.ntime, f"{nonce:08x}", digest))
                if len(out) == count:
                    self.next_nonce = nonce + 1
                    break
            self.hashes += self.next_nonce - start
            if self.next_nonce >= NONCE_SPACE:
                self.extranonce2 += 1
                self.next_nonce = 0
                self._prefix = None
        return out


def submit_line(msg_id: int, worker: str, share: Share) -> bytes:
    params: list[Any] = [worker, share.job_id, share.extranonce2, share.ntime, share.nonce]
    return orjson.dumps({"id": msg_id, "method": "mining.submit", "params": params}) + b"\n"
