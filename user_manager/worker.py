"""User Manager background jobs (role ``worker``), on a scheduler thread.

- the outbox relay: delivers the ``DeleteUserInterests`` calls that a
  ``DELETE /users/<email>`` could not deliver itself, with backoff, until the
  Data Collector acknowledges them (all at once when it answers again after
  an outage);
- the backlog report: a warning in the log while calls are pending;
- the idempotency-key reaper: deletes keys past their retention, in batches.

Every replica may run this process: rows are claimed with ``SKIP LOCKED``,
so replicas share the work and never deliver one message at the same time.
"""

from flask import Flask

from common.process.scheduling import PeriodicJob
from user_manager import idempotency, outbox


def jobs(app: Flask) -> list[PeriodicJob]:
    """Return the jobs, each run in ``app``'s context (the launcher starts and stops them)."""
    config = app.config
    relay = outbox.Relay(
        peer=app.extensions["data_collector"], max_messages=config["OUTBOX_RELAY_BATCH_SIZE"]
    )
    return [
        PeriodicJob("outbox-relay", relay.run, config["OUTBOX_RELAY_INTERVAL_SECONDS"]),
        PeriodicJob(
            "outbox-backlog-report",
            outbox.log_backlog,
            config["OUTBOX_BACKLOG_LOG_INTERVAL_SECONDS"],
        ),
        PeriodicJob(
            "idempotency-key-reaper",
            lambda: idempotency.reap_expired_keys(
                batch_size=config["IDEMPOTENCY_REAPER_BATCH_SIZE"]
            ),
            config["IDEMPOTENCY_REAPER_INTERVAL_SECONDS"],
        ),
    ]
