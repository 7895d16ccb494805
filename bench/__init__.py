"""The benchmark suite: scenarios against a stack it starts itself, and the machine's ceilings.

``make bench`` (``python -m bench``) starts a local stack with PostgreSQL's
default durability, seeds it (``bench.seed``), measures the ceilings of the
same machine with the same load generator and gunicorn settings
(``bench.ceiling``), runs every scenario with wrk (``bench.loadgen``,
``bench/lua``) and prints one table (``bench.report``). ``make bench-soak``
runs the five-minute soak of ``create_user``.
"""
