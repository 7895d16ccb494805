"""PostgreSQL as both services use it: pooled connections and migrations."""
