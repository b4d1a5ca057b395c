"""The built-in CPU miner: a reusable Stratum V1 client plus a hashing loop on top of it."""

from hashquarry.miner.client import StratumClient
from hashquarry.miner.protocol import StratumError, SubmitResult
from hashquarry.miner.runner import MinerOptions, MinerStats, run_miner

__all__ = [
    "MinerOptions",
    "MinerStats",
    "StratumClient",
    "StratumError",
    "SubmitResult",
    "run_miner",
]
