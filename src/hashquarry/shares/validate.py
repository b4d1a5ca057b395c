"""Share validation: pure code, no I/O, the time passed in.

The order of checks matters for what a miner is told: format first (error
20), then the job (21), then the header rules, then duplicates (22), and
the hash against the share target last (23), because hashing is the
expensive step and a duplicate needs no hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from hashquarry.chain.coinbase import assemble_block
from hashquarry.chain.hashing import merkle_root_from_branch, sha256d
from hashquarry.chain.target import DIFF1_TARGET
from hashquarry.chain.template import Template
from hashquarry.shares.events import ErrorCode, ShareResult
from hashquarry.stratum.jobs import Job

MAX_FUTURE_NTIME = 7200


# Not frozen: these two are built for every share, and a frozen dataclass's __init__
# costs about a microsecond more. Treat them as immutable.
@dataclass(slots=True)
class Submission:
    worker: str
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None = None


@dataclass(slots=True)
class Verdict:
    result: ShareResult
    code: int | None  # Stratum error code, None when accepted
    reason: str
    hash: bytes | None = None  # internal order
    is_block: bool = False
    delayed: bool = False
    header: bytes | None = None
    extranonce: bytes | None = None
    actual_difficulty: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.result is ShareResult.ACCEPTED


def _reject(result: ShareResult, code: ErrorCode, reason: str, **kw: object) -> Verdict:
    return Verdict(result=result, code=int(code), reason=reason, **kw)  # type: ignore[arg-type]


def _fixed_hex(value: object, chars: int, name: str) -> bytes | str:
    """Bytes of an exactly `chars`-long hex string, or an error text naming the field."""
    if not isinstance(value, str):
        return f"{name} must be a hex string"
    if len(value) != chars:
        return f"{name} must be {chars} hex characters, got {len(value)}"
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return f"{name} is not hex"
    # fromhex skips whitespace, so "ab cd" would decode short: the length check catches it.
    if len(raw) * 2 != chars:
        return f"{name} is not hex"
    return raw


def validate_share(
    sub: Submission,
    job: Job | None,
    *,
    current_block: bool,
    latest_template: Template | None,
    extranonce1: bytes,
    extranonce2_size: int,
    share_target: int,
    version_mask: int,
    now: float,
) -> Verdict:
    en2 = _fixed_hex(sub.extranonce2, 2 * extranonce2_size, "extranonce2")
    if isinstance(en2, str):
        return _reject(ShareResult.INVALID, ErrorCode.OTHER, en2)
    ntime_raw = _fixed_hex(sub.ntime, 8, "ntime")
    if isinstance(ntime_raw, str):
        return _reject(ShareResult.INVALID, ErrorCode.OTHER, ntime_raw)
    nonce_raw = _fixed_hex(sub.nonce, 8, "nonce")
    if isinstance(nonce_raw, str):
        return _reject(ShareResult.INVALID, ErrorCode.OTHER, nonce_raw)
    rolled = 0
    if sub.version_bits is not None:
        vb = _fixed_hex(sub.version_bits, 8, "version_bits")
        if isinstance(vb, str):
            return _reject(ShareResult.INVALID, ErrorCode.OTHER, vb)
        rolled = int.from_bytes(vb, "big")

    if job is None:
        return _reject(ShareResult.STALE, ErrorCode.JOB_NOT_FOUND, "job not found")
    if not current_block:
        return _reject(
            ShareResult.STALE, ErrorCode.JOB_NOT_FOUND, "stale share: job is from a previous block"
        )

    ntime = int.from_bytes(ntime_raw, "big")
    template = job.template
    if ntime < template.mintime:
        return _reject(
            ShareResult.INVALID, ErrorCode.OTHER, "ntime is older than the template's mintime"
        )
    if ntime > now + MAX_FUTURE_NTIME:
        return _reject(
            ShareResult.INVALID, ErrorCode.OTHER, "ntime is more than 2 hours in the future"
        )
    if rolled & ~version_mask & 0xFFFFFFFF:
        return _reject(
            ShareResult.INVALID,
            ErrorCode.OTHER,
            f"version bits {rolled:08x} outside the negotiated mask {version_mask:08x}",
        )

    extranonce = extranonce1 + en2  # type: ignore[operator]
    key = extranonce + ntime_raw + nonce_raw + rolled.to_bytes(4, "big")  # type: ignore[operator]
    if key in job.seen:
        return _reject(ShareResult.DUPLICATE, ErrorCode.DUPLICATE, "duplicate share")

    if sub.version_bits is None:
        version_le = job.header_version
    else:
        version = (template.version & ~version_mask) | (rolled & version_mask)
        version_le = version.to_bytes(4, "little")
    coinbase_hash = sha256d(job.coinbase.assemble(extranonce))
    merkle = merkle_root_from_branch(coinbase_hash, template.branch)
    # Stratum sends ntime and nonce big-endian; the header holds them little-endian.
    header = (
        version_le
        + job.prev_hash
        + merkle
        + ntime_raw[::-1]  # type: ignore[index]
        + job.header_bits
        + nonce_raw[::-1]  # type: ignore[index]
    )
    digest = sha256d(header)
    value = int.from_bytes(digest, "little")
    actual = DIFF1_TARGET / value if value else float("inf")
    is_block = value <= template.target
    if value > share_target and not is_block:
        return _reject(
            ShareResult.LOW_DIFFICULTY,
            ErrorCode.LOW_DIFFICULTY,
            "low difficulty share",
            hash=digest,
            actual_difficulty=actual,
        )
    # Only a share that counts is remembered, so a rejected one can be fixed and resent.
    job.seen.add(key)
    return Verdict(
        result=ShareResult.ACCEPTED,
        code=None,
        reason="",
        hash=digest,
        is_block=is_block,
        # Work replaced by a newer template on the same block: still valid, but worth less.
        delayed=latest_template is not None and job.template is not latest_template,
        header=header,
        extranonce=extranonce,
        actual_difficulty=actual,
    )


def block_bytes(job: Job, header: bytes, extranonce: bytes) -> bytes:
    return assemble_block(header, job.coinbase.assemble_for_block(extranonce), job.template)
