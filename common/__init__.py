"""Code shared by the five services, grouped by what it serves.

``settings`` (configuration), ``emails`` and ``timeutil`` (rules every service
applies), then one package per concern: ``web`` (the Flask apps), ``db``
(PostgreSQL), ``rpc`` (gRPC between the services), ``observability`` (logs,
metrics, request ids) and ``process`` (launcher, supervisor, jobs, probes).
"""
