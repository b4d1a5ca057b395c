"""API keys and their scopes (pure: no store, no clock).

A key is `hq_` + 32 random bytes (urlsafe base64). Only its sha256 is stored: the secret
has 256 bits of entropy, so a fast hash is enough (a slow KDF protects guessable
passwords, which these are not), and a stolen table yields no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from enum import StrEnum

from hashquarry.accounts.errors import AccountsError

KEY_PREFIX = "hq_"
SHOWN_PREFIX_LEN = 8  # "hq_" and 5 random characters: enough to tell keys apart in a list
_SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters; anything much longer is not ours and is not hashed.
MAX_SECRET_LEN = 128


class Scope(StrEnum):
    READ_HASHRATE = "read_hashrate"  # hashrate and workers
    READ_REVENUE = "read_revenue"
    READ_PAYMENTS = "read_payments"
    MANAGE_ACCOUNTS = "manage_accounts"
    MANAGE_PAYOUTS = "manage_payouts"
    MANAGE_DISTRIBUTIONS = "manage_distributions"
    MANAGE_SCHEDULERS = "manage_schedulers"


ALL_SCOPES = frozenset(Scope)


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def shown_prefix(secret: str) -> str:
    return secret[:SHOWN_PREFIX_LEN]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_secret(secret: object) -> bool:
    """Cheap shape check, so garbage never reaches the store (or the hash)."""
    return (
        isinstance(secret, str)
        and secret.startswith(KEY_PREFIX)
        and len(KEY_PREFIX) + 8 <= len(secret) <= MAX_SECRET_LEN
        and secret.isascii()
    )


def hashes_match(digest: str, stored_hash: str) -> bool:
    """Constant-time comparison, so response time says nothing about how close a guess was."""
    return hmac.compare_digest(digest.encode("ascii"), stored_hash.encode("ascii"))


def verify_secret(secret: str, stored_hash: str) -> bool:
    return hashes_match(hash_secret(secret), stored_hash)


def parse_scopes(value: str | Iterable[str]) -> frozenset[Scope]:
    """Scopes from a comma list or an iterable of names; `all` means every scope.

    Raises AccountsError(field="scopes") naming the unknown scope and listing the known ones.
    """
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    else:
        items = []
        for part in value:
            if not isinstance(part, str):
                raise AccountsError("scopes", f"{part!r} is not a scope name (a string)")
            items.extend(p.strip() for p in part.split(","))
    items = [p for p in items if p]
    if not items:
        raise AccountsError("scopes", "at least one scope is needed")
    out: set[Scope] = set()
    for item in items:
        if item.lower() == "all":
            out.update(Scope)
            continue
        try:
            out.add(Scope(item.lower()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise AccountsError(
                "scopes", f"unknown scope {item!r} (known: {known}, or all)"
            ) from None
    return frozenset(out)


def format_scopes(scopes: Iterable[Scope]) -> str:
    """The stored form: the canonical order of the enum, comma separated."""
    chosen = set(scopes)
    return ",".join(s.value for s in Scope if s in chosen)
