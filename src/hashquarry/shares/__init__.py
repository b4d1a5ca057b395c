"""Share validation (pure) and the events every share result becomes."""
