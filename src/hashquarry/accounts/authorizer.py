"""The Stratum side of accounts: a synchronous, in-memory check of who may mine.

`mining.authorize` runs inside the session's message handler, which must not wait on the
store, so the answer comes from a snapshot of the mining users that the accounts service
refreshes (`AccountsService.refresh_cache`, e.g. every few seconds, since users are added
by the CLI or the API, possibly in another process).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hashquarry.stratum.session import Authorizer


@dataclass(frozen=True)
class Snapshot:
    active: frozenset[str] = frozenset()
    disabled: frozenset[str] = frozenset()  # users whose owner is disabled


@dataclass
class UserCache:
    """The latest snapshot; `None` until the first load (everyone is refused until then)."""

    snapshot: Snapshot | None = None
    loaded_at: float | None = None

    def replace(self, active: Iterable[str], disabled: Iterable[str], now: float) -> None:
        # One attribute swap: a reader on the same thread never sees half a snapshot.
        self.snapshot = Snapshot(frozenset(active), frozenset(disabled))
        self.loaded_at = now

    def add(self, name: str) -> None:
        """A user created in this process can mine at once, before the next refresh."""
        snap = self.snapshot
        if snap is not None:
            self.snapshot = Snapshot(snap.active | {name}, snap.disabled - {name})


def make_authorizer(cache: UserCache, *, allow_address_mode: bool = True) -> Authorizer:
    def authorize(account: str, worker: str, address_mode: bool) -> str | None:
        if address_mode:
            # The session already checked the address for the pool's network.
            if allow_address_mode:
                return None
            return "address mode is off on this pool: mine as a registered mining user"
        snap = cache.snapshot
        if snap is None:
            return "the pool is still loading its accounts; try again shortly"
        if account in snap.active:
            return None
        if account in snap.disabled:
            return f"mining user {account!r} is disabled"
        return f"unknown mining user {account!r}"

    return authorize
