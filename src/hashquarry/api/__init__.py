"""The HTTP APIs: one FastAPI server, one module per dialect, metrics, rate limits."""
