"""Jobs: one per template, with everything a notify or a share check needs precomputed.

The notify line does not depend on the miner (extranonce1 is not in it), so
it is serialized once per job and written as the same bytes to every miner.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from hashquarry.chain.coinbase import CoinbaseParts, build_coinbase
from hashquarry.chain.target import target_to_difficulty
from hashquarry.chain.template import Template


def prevhash_to_notify(prev_hash: bytes) -> str:
    """Stratum's prevhash: internal-order bytes with each 4-byte word reversed."""
    return b"".join(prev_hash[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


@dataclass(slots=True, eq=False)
class Job:
    job_id: str
    template: Template
    coinbase: CoinbaseParts
    clean: bool
    created: float
    notify_line: bytes  # with this job's own clean flag
    notify_line_clean: bytes  # clean_jobs=true, for a miner that has no job yet
    network_difficulty: float
    # Keys of shares already submitted for this job, for duplicate detection.
    seen: set[bytes] = field(default_factory=set)
    # Replaced by a job on another block: its shares are stale from then on, even if the
    # chain comes back to its previous block (its duplicate set is gone).
    retired: bool = False
    # Read for every share: plain attributes, not properties over the template.
    height: int = field(init=False)
    prev_hash: bytes = field(init=False)
    # The fixed parts of the block header, little-endian as hashed.
    header_version: bytes = field(init=False)
    header_bits: bytes = field(init=False)

    def __post_init__(self) -> None:
        t = self.template
        self.height = t.height
        self.prev_hash = t.prev_hash
        self.header_version = t.version.to_bytes(4, "little")
        self.header_bits = t.bits.to_bytes(4, "little")


def _notify_line(job_id: str, template: Template, coinbase: CoinbaseParts, clean: bool) -> bytes:
    params = [
        job_id,
        prevhash_to_notify(template.prev_hash),
        coinbase.coinb1.hex(),
        coinbase.coinb2.hex(),
        [h.hex() for h in template.branch],
        f"{template.version:08x}",
        f"{template.bits:08x}",
        f"{template.curtime:08x}",
        clean,
    ]
    return orjson.dumps({"id": None, "method": "mining.notify", "params": params}) + b"\n"


class JobManager:
    """Turns templates into jobs and remembers recent ones for late shares."""

    def __init__(
        self, payout_script: bytes, *, tag: bytes, extranonce2_size: int, recent_jobs: int = 16
    ) -> None:
        self.payout_script = payout_script
        self.tag = tag
        self.extranonce2_size = extranonce2_size
        self.recent_jobs = recent_jobs
        self._ids = itertools.count(1)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self.current: Job | None = None

    def _next_id(self) -> str:
        return f"{next(self._ids):x}"

    def _make(self, template: Template, coinbase: CoinbaseParts, clean: bool, now: float) -> Job:
        job_id = self._next_id()
        job = Job(
            job_id=job_id,
            template=template,
            coinbase=coinbase,
            clean=clean,
            created=now,
            notify_line=_notify_line(job_id, template, coinbase, clean),
            notify_line_clean=_notify_line(job_id, template, coinbase, True),
            network_difficulty=target_to_difficulty(template.target),
        )
        if clean:
            # Shares for jobs of an earlier block are stale before they are looked up,
            # so their duplicate sets are dead weight (millions of keys at high rates).
            for old in self._jobs.values():
                if old.prev_hash != template.prev_hash:
                    old.retired = True
                    old.seen.clear()
        self._jobs[job_id] = job
        # Jobs from earlier blocks stay a little longer so a late share is named stale,
        # not unknown; both are error 21 but the reason helps the operator.
        while len(self._jobs) > 2 * self.recent_jobs:
            self._jobs.popitem(last=False)
        self.current = job
        return job

    def new_template(self, template: Template, now: float) -> Job:
        clean = self.current is None or self.current.prev_hash != template.prev_hash
        coinbase = build_coinbase(
            template, self.payout_script, tag=self.tag, extranonce2_size=self.extranonce2_size
        )
        return self._make(template, coinbase, clean, now)

    def reissue(self, now: float) -> Job | None:
        """The current work again under a new id and clean_jobs=true (e.g. a new extranonce1)."""
        if self.current is None:
            return None
        cur = self.current
        job = self._make(cur.template, cur.coinbase, True, now)
        # Same header inputs under a new id: a share already counted under the old id
        # must be a duplicate under the new one too.
        job.seen = cur.seen
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def is_current_block(self, job: Job) -> bool:
        return (
            not job.retired and self.current is not None and job.prev_hash == self.current.prev_hash
        )
