"""What the response cache may keep, what empties it, and who is asking.

Reads: Bitminter's and SiaMining's GETs, the read-only pages, and the f2pool endpoints
that only read (listed below; every other /v2 POST is a write). Identities: public
endpoints have none (""); f2pool and Bitminter's /api/users are keyed by the key's owner
and scopes (what the answer depends on), once the key is found live; a page by its user
and permissions, once the page is found to exist. Those findings are re-made against the
store at least every RECHECK_SECONDS (see `Rechecked`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from hashquarry.accounts import keys, queries
from hashquarry.accounts.keys import Scope as KeyScope
from hashquarry.api.bitminter_http import BitminterError, secret_of
from hashquarry.api.context import ApiContext
from hashquarry.api.dialects import PAGES_PREFIX, dialect_of, under

Scope = MutableMapping[str, Any]
# How long a key's (or page's) identity is trusted without asking the store again.
RECHECK_SECONDS = 0.25

F2POOL_READS = frozenset(
    "/v2/" + p
    for p in (
        "hash_rate/info",
        "hash_rate/info_list",
        "hash_rate/history",
        "hash_rate/worker/list",
        "hash_rate/worker/history",
        "hash_rate/distribution/info",
        "hash_rate/distribution/orders",
        "hash_rate/distribution/settlements",
        "revenue/distribution/info",
        "assets/balance",
        "assets/transactions/list",
        "blocks/paging",
        "blocks/date_range",
        "blocks/user",
        "mining_user/get",
        "mining_user/list",
    )
)
_PAGE = re.compile(re.escape(PAGES_PREFIX) + r"[^/]+/([^/]+)(/[^/]*)?$")

log = logging.getLogger(__name__)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _key_identity(owner: str, scopes: str | frozenset[KeyScope]) -> str:
    names = keys.parse_scopes(scopes) if isinstance(scopes, str) else scopes
    return "key:" + owner + ":" + ",".join(sorted(s.value for s in names))


@dataclass(slots=True)
class _Known:
    value: str | None
    at: float  # when the check that found it started


class Rechecked:
    """Answers of an async check (who a key is), each used for at most `ttl` seconds
    after the check began, and made again in the background once half of that has
    passed, so a caller waits for the store only for a key not seen within `ttl`.

    Why not check on every request: at hundreds of cached answers a second the check
    was most of the server's work, and each one queued behind the store while a
    recomputation ran, so cached answers waited for uncached work. A key revoked (or a
    page deleted) stops being answered from the cache within `ttl`."""

    def __init__(
        self,
        check: Callable[[str], Awaitable[str | None]],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.check = check
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._known: dict[str, _Known] = {}
        self._pending: dict[str, asyncio.Task[str | None]] = {}

    async def get(self, key: str) -> str | None:
        known = self._known.get(key)
        if known is not None:
            age = self.clock() - known.at
            if age < self.ttl:
                if age >= self.ttl / 2 and key not in self._pending:
                    self._start(key)
                return known.value
        task = self._pending.get(key) or self._start(key)
        return await asyncio.shield(task)

    def _start(self, key: str) -> asyncio.Task[str | None]:
        task = asyncio.get_running_loop().create_task(self._run(key, self.clock()))
        self._pending[key] = task
        # A re-check made in the background may fail (store away) with nobody awaiting
        # it: the old answer then simply runs out, and the next caller checks afresh.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _run(self, key: str, started: float) -> str | None:
        try:
            value = await self.check(key)
        finally:
            del self._pending[key]
        if len(self._known) >= self.max_entries:
            self._known.clear()  # a flood of distinct keys must not grow memory
        self._known[key] = _Known(value, started)
        return value


class CachePolicy:
    def __init__(self, ctx: ApiContext, recheck: float = RECHECK_SECONDS) -> None:
        self.ctx = ctx
        self._keys = Rechecked(self.key_identity, recheck)
        self._pages = Rechecked(self.page_identity, recheck)

    async def page_identity(self, key: str) -> str | None:
        access = await self.ctx.accounts.resolve_page(key)
        if access is None:
            return None
        return "page:" + access.user + ":" + ",".join(map(str, sorted(access.permissions)))

    async def key_identity(self, secret: str | None) -> str | None:
        """The identity of a live API key, or None. The same decision as
        `AccountsService.authenticate` (hash compared in constant time, not revoked,
        owner enabled) in one read, without its write transaction and last-used stamp
        (the endpoint itself still authenticates, and stamps, whenever it computes)."""
        if not keys.looks_like_secret(secret):
            return None
        assert secret is not None
        digest = keys.hash_secret(secret)
        async with self.ctx.engine.connect() as conn:
            rows = await queries.key_candidates(conn, keys.shown_prefix(secret))
        match = None
        for row in rows:  # every candidate compared, as authenticate does
            if keys.hashes_match(digest, row.hash):
                match = row
        if match is None or match.revoked_at is not None or match.disabled:
            return None
        return _key_identity(match.name, match.scopes)

    def is_read(self, method: str, path: str) -> bool:
        if method == "POST":
            return path in F2POOL_READS
        return method == "GET" and dialect_of(path) in ("bitminter", "siamining", "pages")

    def is_write(self, method: str, path: str) -> bool:
        return method == "POST" and under(path, "/v2") and path not in F2POOL_READS

    async def identity(self, scope: Scope) -> str | None:
        """Who is asking, for the cache key; None: not cached. A store error here must
        not escape the cache (outside every dialect's handlers): the request then goes
        through uncached and the endpoint answers it in its own error shape."""
        try:
            return await self._identity(scope)
        except Exception:
            log.exception("cache: could not identify a caller; answering uncached")
            return None

    async def _identity(self, scope: Scope) -> str | None:
        path = scope["path"]
        dialect = dialect_of(path)
        if dialect == "siamining" or (dialect == "bitminter" and under(path, "/api/pool")):
            return ""
        if dialect == "f2pool":
            secret = _header(scope, b"f2p-api-secret")
            return await self._keys.get(secret) if secret else None
        if dialect == "bitminter":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key")
            if query and len(query) > 1:
                # Which of several keys the endpoint reads is the framework's choice:
                # never risk caching one key's answer under another's identity.
                return None
            try:
                secret = secret_of(_header(scope, b"authorization"), query[0] if query else None)
            except BitminterError:
                return None
            return await self._keys.get(secret)
        if dialect == "pages":
            found = _PAGE.match(path)
            return await self._pages.get(found.group(1)) if found else None
        return None
