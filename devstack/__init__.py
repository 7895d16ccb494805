"""The local stack: the five services, PostgreSQL, NATS, a mail catcher and Prometheus.

The OpenSky simulator too, when asked for. ``make run`` runs ``python -m
devstack``; the test suite uses :class:`devstack.stack.LocalStack` to start the
same processes on free ports.
"""
