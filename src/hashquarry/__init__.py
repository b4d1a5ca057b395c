"""hashquarry: a mining-pool platform."""

__version__ = "0.1.0"
