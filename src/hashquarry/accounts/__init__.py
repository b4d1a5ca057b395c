"""Accounts: owners and their API keys, mining users (f2pool sub-accounts), wallets,
payment pauses, thresholds, read-only pages and settle modes.

The rules are pure functions (`names`, `keys`, `pages`); `service.AccountsService` is the
only part that touches the store, and `authorizer` is the synchronous view Stratum uses.
"""
