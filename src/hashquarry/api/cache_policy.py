"""What the response cache may keep, what empties it, and who is asking.

Reads: Bitminter's and SiaMining's GETs, the read-only pages, and the f2pool endpoints
that only read (listed below; every other /v2 POST is a write). Identities: public
endpoints have none (""); f2pool and Bitminter's /api/users are keyed by the key's owner
and scopes (what the answer depends on), after checking the key is live; a page by its
user and permissions, after checking the page still exists.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs

from hashquarry.accounts.models import Authenticated
from hashquarry.api.bitminter_http import BitminterError, secret_of
from hashquarry.api.context import ApiContext
from hashquarry.api.dialects import PAGES_PREFIX, dialect_of, under

Scope = MutableMapping[str, Any]

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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _key_identity(found: Authenticated | None) -> str | None:
    if found is None:
        return None
    return "key:" + found.owner + ":" + ",".join(sorted(s.value for s in found.scopes))


class CachePolicy:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def is_read(self, method: str, path: str) -> bool:
        if method == "POST":
            return path in F2POOL_READS
        return method == "GET" and dialect_of(path) in ("bitminter", "siamining", "pages")

    def is_write(self, method: str, path: str) -> bool:
        return method == "POST" and under(path, "/v2") and path not in F2POOL_READS

    async def identity(self, scope: Scope) -> str | None:
        path = scope["path"]
        dialect = dialect_of(path)
        if dialect == "siamining" or (dialect == "bitminter" and under(path, "/api/pool")):
            return ""
        if dialect == "f2pool":
            secret = _header(scope, b"f2p-api-secret")
            return _key_identity(await self.ctx.accounts.authenticate(secret)) if secret else None
        if dialect == "bitminter":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key")
            try:
                secret = secret_of(_header(scope, b"authorization"), query[0] if query else None)
            except BitminterError:
                return None
            return _key_identity(await self.ctx.accounts.authenticate(secret))
        if dialect == "pages":
            found = _PAGE.match(path)
            access = await self.ctx.accounts.resolve_page(found.group(1)) if found else None
            if access is None:
                return None
            return "page:" + access.user + ":" + ",".join(map(str, sorted(access.permissions)))
        return None
