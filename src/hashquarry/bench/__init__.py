"""`hashquarry bench`: measure a Stratum pool's speed, memory and latencies.

The pieces are small on purpose: `measure` reads /proc and computes percentiles,
`shares` precomputes valid shares, `loadgen` is the load generator (its own
processes), `poolproc`/`relay` start and observe the pool under test, `figures`
holds one function per published figure, `runner` ties them together and
`cli` is the typer sub-app.
"""
