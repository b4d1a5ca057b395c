"""Hashrate and revenue distribution (f2pool): one mining user hands part of what it
mines to another user of the same owner.

- A *hashrate order* sells `hash_rate` H/s of a distributor's work to a recipient between
  two times; each settled UTC day, the recipient gets the part of the distributor's income
  that those hashes earned.
- A *revenue distribution* gives a recipient a fixed proportion of the distributor's
  revenue (after its hashrate orders) at each settlement.

Both move money only as `dividend` ledger entries (minus on the distributor, plus on the
recipient, under one idempotency ref), so balances stay sums of the journal.

`math` is the pure arithmetic; `tables` the schema; `settlement` the daily run on a
connection; `holds` what payouts must leave in a distributor's balance until its days are
settled, and `reserve` that rule as the payout engine uses it; `service.DistributionService`
the owner-scoped operations.
"""
