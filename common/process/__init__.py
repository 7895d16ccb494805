"""How a service runs as processes: the launcher, its supervisor, scheduled jobs, probes."""
