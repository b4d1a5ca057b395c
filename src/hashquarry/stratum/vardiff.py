"""Per-connection variable difficulty: pure, the time passed in.

The estimate is shares counted over a window; the difficulty moves by the
ratio of the target interval to the observed one, bounded per step so one
lucky burst cannot throw it far, and not at all inside the variance band
so it does not flap. A flood of shares retargets early, so a fast miner
that joins at a low difficulty is brought up within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_STEP_UP = 16.0
MAX_STEP_DOWN = 0.25
EARLY_FACTOR = 4  # this many times the expected shares in a window retargets at once


@dataclass(frozen=True, slots=True)
class VardiffRules:
    target_interval: float = 10.0
    retarget_window: float = 60.0
    variance: float = 0.3
    min_difficulty: float = 1e-6
    max_difficulty: float = 1e15

    def ceiling(self, network_difficulty: float | None) -> float:
        """Never ask for more than a block, unless the operator's minimum is already higher.

        A minimum above the network difficulty (regtest, tiny test networks) means the
        operator accepts that every share is a block; vardiff then runs freely up to the
        maximum, so the share rate stays sane.
        """
        if network_difficulty is None or network_difficulty < self.min_difficulty:
            return self.max_difficulty
        return min(self.max_difficulty, network_difficulty)

    def clamp(self, difficulty: float, network_difficulty: float | None = None) -> float:
        return max(self.min_difficulty, min(difficulty, self.ceiling(network_difficulty)))


def round_difficulty(d: float) -> float:
    """Four significant digits: miners print it, and some dislike long floats."""
    return float(f"{d:.4g}")


class Vardiff:
    __slots__ = ("count", "difficulty", "rules", "window_start")

    def __init__(self, rules: VardiffRules, difficulty: float, now: float) -> None:
        self.rules = rules
        self.difficulty = difficulty
        self.window_start = now
        self.count = 0

    def reset(self, difficulty: float, now: float) -> None:
        self.difficulty = difficulty
        self.window_start = now
        self.count = 0

    def on_share(self, now: float, network_difficulty: float | None = None) -> float | None:
        """Count an accepted share; a new difficulty when it is time to change."""
        self.count += 1
        return self.retarget(now, network_difficulty)

    def retarget(self, now: float, network_difficulty: float | None = None) -> float | None:
        r = self.rules
        elapsed = now - self.window_start
        expected = r.retarget_window / r.target_interval
        if elapsed < r.retarget_window and not (
            self.count >= EARLY_FACTOR * expected and elapsed > 0
        ):
            return None
        if elapsed <= 0:
            return None
        if self.count == 0:
            ratio = MAX_STEP_DOWN if elapsed >= r.retarget_window else 1.0
        else:
            observed = elapsed / self.count
            ratio = r.target_interval / observed
        self.window_start = now
        self.count = 0
        if abs(ratio - 1.0) <= r.variance:
            ratio = 1.0  # no move, but a lowered ceiling still applies below
        ratio = min(MAX_STEP_UP, max(MAX_STEP_DOWN, ratio))
        new = r.clamp(round_difficulty(self.difficulty * ratio), network_difficulty)
        if new == self.difficulty:
            return None
        self.difficulty = new
        return new
