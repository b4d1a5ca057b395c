"""extranonce1 allocation: 4 bytes per session, first byte fixed per front end.

The session id a miner is given is its extranonce1 in hex; a miner that
reconnects with that id within the resume window gets the same extranonce1
back, so the work it already has stays valid.
"""

from __future__ import annotations

from collections import OrderedDict

SPACE = 1 << 24


class ExtranonceExhausted(RuntimeError):
    pass


class ExtranonceAllocator:
    def __init__(self, prefix: int = 0, resume_seconds: float = 600.0) -> None:
        if not 0 <= prefix <= 0xFF:
            raise ValueError("extranonce1 prefix must be one byte")
        self.prefix = prefix
        self.resume_seconds = resume_seconds
        self._next = 1
        self._in_use: set[int] = set()
        # Released ids waiting for their owner to come back, oldest first.
        self._parked: OrderedDict[int, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._parked:
            _, at = next(iter(self._parked.items()))
            if now - at < self.resume_seconds:
                break
            self._parked.popitem(last=False)

    def allocate(self, now: float, resume: str | None = None) -> bytes:
        self._expire(now)
        if resume is not None:
            value = self._parse(resume)
            if value is not None and value in self._parked:
                del self._parked[value]
                self._in_use.add(value)
                return self._bytes(value)
        for _ in range(SPACE):
            value = self._next
            self._next = self._next + 1 if self._next + 1 < SPACE else 1
            if value not in self._in_use and value not in self._parked:
                self._in_use.add(value)
                return self._bytes(value)
        raise ExtranonceExhausted("no free extranonce1 left on this front end")

    def release(self, extranonce1: bytes, now: float) -> None:
        value = int.from_bytes(extranonce1[1:], "big")
        if value in self._in_use:
            self._in_use.discard(value)
            if self.resume_seconds > 0:
                self._parked[value] = now

    def _bytes(self, value: int) -> bytes:
        return bytes([self.prefix]) + value.to_bytes(3, "big")

    def _parse(self, session_id: str) -> int | None:
        try:
            raw = bytes.fromhex(session_id)
        except ValueError:
            return None
        if len(raw) != 4 or raw[0] != self.prefix:
            return None
        return int.from_bytes(raw[1:], "big")

    @property
    def in_use(self) -> int:
        return len(self._in_use)
