"""Everything that talks about the chain: hashing, scripts, coinbase, templates, the node."""
