"""Data Collector: users' airport interests, OpenSky flight collection and flight queries."""
