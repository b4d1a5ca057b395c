"""What every share result becomes, for accounting and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ErrorCode(IntEnum):
    OTHER = 20
    JOB_NOT_FOUND = 21  # also used for stale shares
    DUPLICATE = 22
    LOW_DIFFICULTY = 23
    UNAUTHORIZED = 24
    NOT_SUBSCRIBED = 25


class ShareResult(StrEnum):
    ACCEPTED = "accepted"
    STALE = "stale"
    DUPLICATE = "duplicate"
    LOW_DIFFICULTY = "low_difficulty"
    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"


@dataclass(slots=True)
class ShareEvent:
    """One share's result. Treat as immutable: it is not frozen only because a frozen
    dataclass costs ~1.6 µs more to build, on a path that runs per share."""

    time: float
    account: str
    worker: str
    job_id: str
    height: int
    difficulty: float  # the share difficulty the miner was asked for
    network_difficulty: float
    result: ShareResult
    reason: str
    hash_hex: str | None  # display order, None when the share was not hashed
    is_block: bool
    delayed: bool  # accepted for a job already replaced by a non-clean job
    remote: str
    session_id: str
    # For payout schemes that credit by the hash actually found.
    actual_difficulty: float = 0.0
    # What a block on this job would have paid (coinbase value) and of that the fees:
    # PPS and FPPS price each share from these.
    block_reward: int = 0
    tx_fees: int = 0
    coin: str = "bitcoin"

    @property
    def accepted(self) -> bool:
        return self.result is ShareResult.ACCEPTED
