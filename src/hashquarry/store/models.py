"""The schema, as SQLAlchemy Core tables (bulk upserts are the common write).

Money columns are BigInteger base units. Difficulties are floats: a share's
difficulty is a float on the wire, and hashrate figures are estimates anyway.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Key/value state that must move atomically with the data it describes,
# e.g. the last share-log sequence number applied to the aggregates.
state = Table(
    "state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)


def _minute_sums() -> list[Column[Any]]:
    """The per-minute share sums kept for a worker and for an account alike."""
    return [
        Column("accepted", Integer, nullable=False, default=0),
        Column("accepted_diff", Float, nullable=False, default=0.0),
        Column("stale", Integer, nullable=False, default=0),
        Column("stale_diff", Float, nullable=False, default=0.0),
        Column("invalid", Integer, nullable=False, default=0),
        Column("invalid_diff", Float, nullable=False, default=0.0),
        Column("delayed_diff", Float, nullable=False, default=0.0),
        Column("first_share", Float, nullable=False),
        Column("last_share", Float, nullable=False),
        Column("network_difficulty", Float, nullable=False, default=0.0),
    ]


share_minutes = Table(
    "share_minutes",
    metadata,
    Column("coin", String(32), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("worker", String(64), primary_key=True),
    Column("minute", BigInteger, primary_key=True),  # unix time // 60
    *_minute_sums(),
)
Index("ix_share_minutes_coin_minute", share_minutes.c.coin, share_minutes.c.minute)

account_minutes = Table(
    "account_minutes",
    metadata,
    Column("coin", String(32), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("minute", BigInteger, primary_key=True),
    *_minute_sums(),
)
Index("ix_account_minutes_coin_minute", account_minutes.c.coin, account_minutes.c.minute)

workers = Table(
    "workers",
    metadata,
    Column("coin", String(32), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("worker", String(64), primary_key=True),
    Column("first_seen", Float, nullable=False),
    Column("last_share", Float, nullable=False),
    Column("last_host", String(64), nullable=False, default=""),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("invalid", BigInteger, nullable=False, default=0),
)

# Accepted shares, kept for the PPLNS window (pruned by age).
shares = Table(
    "shares",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("coin", String(32), nullable=False),
    Column("time", Float, nullable=False),
    Column("account", String(128), nullable=False),
    Column("worker", String(64), nullable=False),
    Column("difficulty", Float, nullable=False),
)
Index("ix_shares_coin_seq", shares.c.coin, shares.c.seq)

# Per-account sums of the share log in fixed seq spans (accounting/spans.py), so a PPLNS
# window or a round of millions of shares is read as a few thousand rows. `weight` is an
# integer in decimal text: at mainnet share difficulties a span's sum passes 2**63.
share_spans = Table(
    "share_spans",
    metadata,
    Column("coin", String(32), primary_key=True),
    Column("span", BigInteger, primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("weight", Text, nullable=False),
    Column("first_time", Float, nullable=False),
    Column("last_time", Float, nullable=False),
)

rounds = Table(
    "rounds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("start_seq", BigInteger, nullable=False),
    Column("end_seq", BigInteger, nullable=True),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("accepted_diff", Float, nullable=False, default=0.0),
    Column("rejected", BigInteger, nullable=False, default=0),
    Column("rejected_diff", Float, nullable=False, default=0.0),
    Column("network_difficulty", Float, nullable=False, default=0.0),
    Column("block_id", Integer, nullable=True),
)
Index("ix_rounds_coin_open", rounds.c.coin, rounds.c.ended_at)

round_accounts = Table(
    "round_accounts",
    metadata,
    Column("round_id", Integer, primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("accepted_diff", Float, nullable=False, default=0.0),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
)

shifts = Table(
    "shifts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("span", Float, nullable=False),  # difficulty that completes the shift
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("accepted_diff", Float, nullable=False, default=0.0),
    Column("rejected", BigInteger, nullable=False, default=0),
    Column("score", Float, nullable=False, default=0.0),
    Column("completed", Boolean, nullable=False, default=False),
)

shift_accounts = Table(
    "shift_accounts",
    metadata,
    Column("shift_id", Integer, primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("score", Float, nullable=False, default=0.0),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
)

blocks = Table(
    "blocks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("height", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("difficulty", Float, nullable=False),
    Column("income", BigInteger, nullable=False),  # coinbase value, base units
    Column("tx_fees", BigInteger, nullable=False, default=0),
    Column("finder_account", String(128), nullable=False),
    Column("finder_worker", String(64), nullable=False),
    Column("found_at", Float, nullable=False),
    Column("seq", BigInteger, nullable=False),  # share-log seq of the winning share
    Column("round_id", Integer, nullable=True),
    Column("round_duration", Float, nullable=False, default=0.0),
    Column("round_accepted", BigInteger, nullable=False, default=0),
    Column("round_rejected", BigInteger, nullable=False, default=0),
    Column("round_diff", Float, nullable=False, default=0.0),
    Column("effort", Float, nullable=False, default=0.0),  # round work / network difficulty
    Column("status", String(16), nullable=False),
    Column("confirmations", BigInteger, nullable=False, default=0),
    Column("confirmations_left", BigInteger, nullable=False),
    Column("submit_result", String(128), nullable=True),
    Column("scheme", String(8), nullable=False),
    Column("credited", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("coin", "hash", name="uq_blocks_coin_hash"),
)
Index("ix_blocks_status", blocks.c.coin, blocks.c.status)

# The money: an append-only journal. Balances are sums over it, never stored.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("account", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # revenue payout dividend reward fee
    Column("bucket", String(16), nullable=False),  # balance | immature
    Column("amount", BigInteger, nullable=False),
    Column("block_id", Integer, nullable=True),
    Column("ref", String(128), nullable=True),  # idempotency key of the operation
    Column("created_at", Float, nullable=False),
    Column("mining_date", String(10), nullable=True),  # YYYY-MM-DD (UTC)
    Column("extra", JSON, nullable=True),  # f2pool mining_extra and the like
    UniqueConstraint("ref", "account", "bucket", name="uq_ledger_ref"),
)
Index("ix_ledger_account", ledger.c.coin, ledger.c.account)

# PPS/FPPS earnings accrue per share in nano-units and settle daily.
pps_accruals = Table(
    "pps_accruals",
    metadata,
    Column("coin", String(32), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD (UTC) the shares were mined
    # Accrued value = sats x 1e9 + nano: two columns, so a large account cannot
    # overflow a 64-bit nano-unit sum (9.2e18 nano is only 92 coins).
    Column("sats", BigInteger, nullable=False, default=0),
    Column("nano", BigInteger, nullable=False, default=0),
    Column("fee_nano", BigInteger, nullable=False, default=0),
    Column("tx_fee_nano", BigInteger, nullable=False, default=0),
    Column("accepted_diff", Float, nullable=False, default=0.0),
    Column("settled", Boolean, nullable=False, default=False),
)

settle_modes = Table(
    "settle_modes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("coin", String(32), nullable=False),
    Column("account", String(128), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("activate_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_settle_modes_account", settle_modes.c.coin, settle_modes.c.account)
