"""Collection: keeping the flights of every followed airport current from OpenSky.

The worker (:mod:`data_collector.worker`) runs cycles; one cycle reads as its
phases in :mod:`.cycle` (start, plan, fetch, store, mark, finish), each with
one commit point. Beside it, each module does one job:

- :mod:`.planning`: what a cycle asks for and what it costs (pure functions);
- :mod:`.opensky`: the OpenSky client (tokens, timeouts, retries, parsing);
- :mod:`.store`: the database edge: flights, day marks, the shared state;
- :mod:`.retries`: failed ranges and when they are asked for again;
- :mod:`.lock`: one cycle at a time across processes and replicas;
- :mod:`.cycle_requests`: asking for a cycle soon, the only module the web
  workers import (this package imports nothing, so they load nothing else).

Inside the package times are Unix seconds and days UTC day numbers; the
conversions to the database's timestamps and dates are
:mod:`common.timeutil`'s, called at the edges (store, retries, logs).
"""
