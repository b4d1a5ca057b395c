"""The accounts schema: SQLAlchemy Core tables on the store's one `metadata`.

Times are Unix seconds as floats, like the rest of the store. Money (thresholds) is
BigInteger base units. Settle modes are not here: they live in `store.models.settle_modes`
because the accounting code reads them on the hot path.

Mining-user names are the primary key on their own, not per owner: a Stratum user name is
`name.worker` with no owner in it, and the ledger's `account` column holds the bare name.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
)

from hashquarry.store.models import metadata

owners = Table(
    "owners",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    # Disabled owners keep their data (balances are still theirs) but their keys, pages and
    # miners are refused.
    Column("disabled", Boolean, nullable=False, default=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner_id", Integer, ForeignKey("owners.id"), nullable=False),
    # The first characters of the secret: shown in lists so a key can be recognised, and
    # the (non-secret) index that authentication looks candidates up by.
    Column("prefix", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),  # sha256 hex; never the secret
    Column("scopes", String(512), nullable=False),  # comma list of keys.Scope values
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
)
Index("ix_api_keys_prefix", api_keys.c.prefix)
Index("ix_api_keys_owner", api_keys.c.owner_id)

mining_users = Table(
    "mining_users",
    metadata,
    Column("name", String(15), primary_key=True),
    Column("owner_id", Integer, ForeignKey("owners.id"), nullable=False),
    Column("description", String(256), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)
Index("ix_mining_users_owner", mining_users.c.owner_id)

# One row per (user, currency). The address may be unset: payments can be paused, or a
# threshold chosen, before a wallet address is known; such a row is never paid.
user_wallets = Table(
    "user_wallets",
    metadata,
    Column("user", String(15), ForeignKey("mining_users.name"), primary_key=True),
    Column("currency", String(32), primary_key=True),
    Column("address", String(90), nullable=True),
    Column("threshold", BigInteger, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
)

read_only_pages = Table(
    "read_only_pages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(15), ForeignKey("mining_users.name"), nullable=False),
    Column("page_key", String(64), nullable=False, unique=True),
    Column("page_name", String(64), nullable=False, default=""),
    Column("permissions", String(16), nullable=False),  # f2pool's "1,3" comma list
    Column("created_at", Float, nullable=False),
    # Soft delete: a deleted key stays unique forever, so an old link can never come back
    # to life pointing at someone else's page.
    Column("deleted_at", Float, nullable=True),
)
Index("ix_read_only_pages_user", read_only_pages.c.user)

ACCOUNTS_TABLES = (owners, api_keys, mining_users, user_wallets, read_only_pages)
