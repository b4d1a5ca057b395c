"""Payout tables: an intent is written before the wallet is asked to pay."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table

from hashquarry.store.models import metadata

payouts = Table(
    "payouts",
    metadata,
    Column("id", String(32), primary_key=True),  # also in the wallet tx comment
    Column("coin", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # auto | withdraw
    # intent: written, wallet not asked | sending: sendmany may have reached the node |
    # sent | confirmed | failed (debits reversed) | conflicted | abandoned (flagged, still
    # debited, still tracked: see engine.py)
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("total", BigInteger, nullable=False),  # debited from balances, base units
    Column("tip", BigInteger, nullable=False, default=0),  # network fee
    Column("fee_policy", String(16), nullable=False),  # pool | deducted
    Column("txid", String(64), nullable=True),
    Column("sent_at", Float, nullable=True),  # sending: when sendmany was called; then paid
    Column("confirmations", BigInteger, nullable=False, default=0),
    Column("error", String(512), nullable=True),  # the reason, or a flag for the operator
)
Index("ix_payouts_status", payouts.c.coin, payouts.c.status)

payout_items = Table(
    "payout_items",
    metadata,
    Column("payout_id", String(32), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("address", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),  # debited from the account
    Column("paid", BigInteger, nullable=False),  # what the address received
)
Index("ix_payout_items_account", payout_items.c.account)
