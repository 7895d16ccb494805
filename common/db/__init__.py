"""PostgreSQL as every service uses it: pooled connections and migrations."""
