"""The distribution schema: SQLAlchemy Core tables on the store's one `metadata`.

Times are Unix seconds as floats and money is BigInteger base units, like the rest of the
store. Hashrate is H/s as a float: it is an estimate from share difficulty, and f2pool
sends it as a double; the settlement converts floats to exact fractions before any
arithmetic, so nothing is lost between the column and the split.

Proportions are stored exactly as integer parts per million (`proportion_ppm`, 300000
for 0.3): a float column would make "the proportions of a distributor sum to at most 1"
an approximate rule, and Numeric behaves differently on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from hashquarry.store.models import metadata

# The users are mining users (f2pool sub-accounts); the ledger's `account` is the bare
# name, so these columns join the ledger without translation.
hashrate_orders = Table(
    "hashrate_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("distributor", String(15), ForeignKey("mining_users.name"), nullable=False),
    Column("recipient", String(15), ForeignKey("mining_users.name"), nullable=False),
    Column("hash_rate", Float, nullable=False),  # H/s sold
    Column("start_at", Float, nullable=False),
    Column("end_at", Float, nullable=False),  # exclusive
    # Set when ended early; the order then covers [start_at, terminate_at).
    Column("terminate_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    # "active" or "terminated". Whether an active order is pending, running or over is a
    # matter of the clock, so it is derived when read rather than stored and left stale.
    Column("status", String(16), nullable=False),
)
Index("ix_hashrate_orders_distributor", hashrate_orders.c.coin, hashrate_orders.c.distributor)
Index("ix_hashrate_orders_end", hashrate_orders.c.coin, hashrate_orders.c.end_at)

# One row per order and settled UTC day, written with the day's dividend entries. Its
# existence is what makes a settlement run idempotent; `ref` is the ledger ref it used.
hashrate_settlements = Table(
    "hashrate_settlements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Integer, ForeignKey("hashrate_orders.id"), nullable=False),
    Column("period_start", Float, nullable=False),
    Column("period_end", Float, nullable=False),
    Column("hashes", Float, nullable=False),  # hashes delivered to the recipient (not H/s)
    Column("income", BigInteger, nullable=False),  # base units moved to the recipient
    # What the split was made from, so a settlement can be checked by hand later.
    Column("distributor_hashes", Float, nullable=False),
    Column("distributor_income", BigInteger, nullable=False),
    Column("settled_at", Float, nullable=False),
    Column("ref", String(128), nullable=False, unique=True),
    UniqueConstraint("order_id", "period_start", name="uq_hashrate_settlements_period"),
)
Index("ix_hashrate_settlements_order", hashrate_settlements.c.order_id)

revenue_distributions = Table(
    "revenue_distributions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("distributor", String(15), ForeignKey("mining_users.name"), nullable=False),
    Column("recipient", String(15), ForeignKey("mining_users.name"), nullable=False),
    Column("description", String(256), nullable=False, default=""),
    Column("proportion_ppm", Integer, nullable=False),  # 1..1_000_000 (see module doc)
    Column("created_at", Float, nullable=False),
    # Soft delete: settlements of days it covered must still be explainable afterwards.
    Column("deleted_at", Float, nullable=True),
)
Index(
    "ix_revenue_distributions_distributor",
    revenue_distributions.c.coin,
    revenue_distributions.c.distributor,
)

DISTRIBUTION_TABLES = (hashrate_orders, hashrate_settlements, revenue_distributions)
