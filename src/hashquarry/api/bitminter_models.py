"""Bitminter's response shapes, field for field as its API page documents them.

Units at this edge only: pool hash rates in GH/s, user and worker hash rates in MH/s,
money in coins (JSON numbers), times in whole Unix seconds.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

GH = 1e9
MH = 1e6
COIN = 100_000_000

# Our coin names (f2pool's) to the commodity codes Bitminter uses ("BTC", "NMC").
COMMODITIES = {
    "bitcoin": "BTC",
    "bitcoin-cash": "BCH",
    "bitcoin-sv": "BSV",
    "litecoin": "LTC",
    "namecoin": "NMC",
    "nmccoin": "NMC",
    "dash": "DASH",
    "zcash": "ZEC",
}


def commodity_of(coin: str) -> str:
    return COMMODITIES.get(coin, coin.upper())


def coins(sats: int) -> float:
    return sats / COIN


class BitminterPoolStats(BaseModel):
    hash_rate: float = Field(description="The pool's hash rate in Ghps")
    active_workers: int = Field(description="The number of currently active workers")
    active_users: int = Field(description="The number of currently active users")


class BitminterChain(BaseModel):
    accepted: int = Field(description="The number of accepted proofs of work")
    rejected: int = Field(description="The number of rejected proofs of work")
    duration: int = Field(description="BitminterRound duration in seconds")
    difficulty: float = Field(description="The current difficulty of this chain")


class BitminterRound(BitminterPoolStats):
    shift_accepted: int = Field(description="Accepted shares in the current shift")
    shift_rejected: int = Field(description="Rejected shares in the current shift")
    shift_duration: int = Field(description="Seconds spent on the current shift")
    shift_score: float = Field(description="The total score so far")
    chains: dict[str, BitminterChain] = Field(description="Chain/cointype to its round data")


class BitminterBlock(BaseModel):
    id: int = Field(description="BitminterBlock ID unique within this pool")
    chain: str = Field(description="The chain/cointype, e.g. BTC")
    hash: str = Field(description="The hash of the block header")
    height: int = Field(description="The height aka. block number")
    difficulty: float = Field(description="The difficulty at the time this block was generated")
    income: float = Field(description="Total income, minted coins + transaction fees")
    accepted: int = Field(description="The number of accepted proofs of work")
    rejected: int = Field(description="The number of rejected proofs of work")
    status: str = Field(description="processing, unconfirmed, stale, orphan or confirmed")
    confirmations_left: int = Field(
        description="Confirmations left, -1 if stale/orphaned, 0 if confirmed"
    )
    generator: str = Field(description="The name of the user who generated this block")
    generated: int = Field(description="The time the block was generated (Unix seconds)")
    duration: int = Field(description="Time spent on this block, in seconds")


class BitminterShift(BaseModel):
    id: int = Field(description="BitminterShift ID unique within this pool")
    difficulty: float = Field(description="The difficulty at the time this shift was completed")
    accepted: int = Field(description="The number of accepted proofs of work")
    rejected: int = Field(description="The number of rejected proofs of work")
    score: float = Field(description="Total score of the shift")
    completed: int = Field(description="The time the shift was completed (Unix seconds)")
    duration: int = Field(description="Time spent on this shift, in seconds")


class BitminterUserShift(BaseModel):
    start: int = Field(description="BitminterShift start time (Unix seconds)")
    accepted: int = Field(description="Proofs of work accepted in the current shift")
    rejected: int = Field(description="Proofs of work rejected in the current shift")
    user_score: float = Field(description="Score in the current shift (user only)")
    total_score: float = Field(description="Score in the current shift (pool total)")


class BitminterWorkData(BaseModel):
    total_accepted: int = Field(description="Accepted proofs of work (all time)")
    total_rejected: int = Field(description="Rejected proofs of work (all time)")
    round_accepted: int = Field(0, description="No longer used (always zero)")
    round_rejected: int = Field(0, description="No longer used (always zero)")
    checkpoint_accepted: int = Field(
        0, description="Accepted proofs of work before the last reset (never reset: zero)"
    )
    checkpoint_rejected: int = Field(
        0, description="Rejected proofs of work before the last reset (never reset: zero)"
    )


class BitminterWorker(BaseModel):
    name: str = Field(description="The worker's name")
    hash_rate: float = Field(description="Current hash rate in Mhps")
    last_work: int = Field(description="Last time a proof of work was sent in (Unix seconds)")
    alive: bool = Field(description="True if proof of work received in the last 5 minutes")
    work: dict[str, BitminterWorkData] = Field(description="Commodity name to work data")


class BitminterUser(BaseModel):
    name: str = Field(description="The user name")
    active_workers: int = Field(description="Number of currently active workers")
    hash_rate: float = Field(description="Current hash rate in Mhps (all workers)")
    now: int = Field(description="Server time (Unix seconds)")
    round_start: dict[str, int] = Field(description="Commodity name to round start time")
    shift: BitminterUserShift = Field(description="Current shift")
    balances: dict[str, float] = Field(description="Commodity name to balance (coins)")
    workers: list[BitminterWorker] = Field(description="One object per worker")


class BitminterErrorBody(BaseModel):
    error: str = Field(description="What was wrong, naming the parameter at fault")
    parameter: str | None = Field(None, description="The parameter at fault, if any")
