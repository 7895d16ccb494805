"""The local stack: both services, an embedded PostgreSQL and optionally the OpenSky simulator.

``make run`` runs ``python -m devstack``; the test suite uses
:class:`devstack.stack.LocalStack` to start the same processes on free ports.
"""
