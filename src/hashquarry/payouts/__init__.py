"""Payouts through the node's wallet, exactly once: intents, sendmany, reconciliation."""
