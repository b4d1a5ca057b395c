"""Accounting: pool statistics, rounds and the payout-scheme math (pure, integer satoshis)."""
