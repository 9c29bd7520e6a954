"""PostgreSQL / TimescaleDB: the schema's migrations (and, next, the journal shipper)."""
