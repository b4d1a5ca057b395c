"""Prometheus metrics of the pool process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SHARES = Counter("hashquarry_shares_total", "Share results", ["result"])
SHARE_DIFFICULTY = Counter(
    "hashquarry_accepted_difficulty_total", "Sum of the difficulty of accepted shares"
)
BLOCKS_FOUND = Counter("hashquarry_blocks_found_total", "Shares that met the network target")
BLOCKS_SUBMITTED = Counter(
    "hashquarry_blocks_submitted_total", "submitblock answers by result", ["result"]
)
CONNECTIONS = Gauge("hashquarry_connections", "Open Stratum connections")
WORKERS = Gauge("hashquarry_workers", "Authorized workers on open connections")
BANS = Counter("hashquarry_bans_total", "IPs banned for bad behaviour")
REFUSED = Counter("hashquarry_connections_refused_total", "Connections refused", ["reason"])
JOBS = Counter("hashquarry_jobs_total", "Jobs broadcast", ["clean"])
NODE_UP = Gauge("hashquarry_node_up", "1 while the coin node answers")
BLOCK_SUBMIT_SECONDS = Histogram(
    "hashquarry_block_submit_seconds",
    "From the winning share passing validation to the node's answer to submitblock",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)

# Bound once: `.labels()` on every share is a measurable share of the hot path.
SHARES_BY_RESULT = {
    r: SHARES.labels(r)
    for r in ("accepted", "stale", "duplicate", "low_difficulty", "invalid", "unauthorized")
}
