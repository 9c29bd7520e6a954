"""The database schema: ordered migrations (sql/migrations), applied by `ttquant db migrate`."""
