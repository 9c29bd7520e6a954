"""TTQuant sidecars: recorder/journal, PostgreSQL shipping, metrics (later issues)."""
