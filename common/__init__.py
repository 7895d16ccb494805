"""Code shared by the User Manager and the Data Collector, grouped by what it serves.

``settings`` (configuration), ``emails`` and ``timeutil`` (rules both services
apply), then one package per concern: ``web`` (the Flask apps), ``db``
(PostgreSQL), ``rpc`` (gRPC between the services), ``observability`` (logs,
metrics, request ids) and ``process`` (launcher, supervisor, jobs, probes).
"""
