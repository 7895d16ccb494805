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

from common.process.scheduling import Jobs, PeriodicJob
from common.process.supervisor import run_until_stopped
from user_manager import idempotency, outbox
from user_manager.app import create_app


def jobs() -> Jobs:
    """Build the jobs, on an app of their own (the launcher starts and stops them)."""
    app = create_app(migrations=False, process="worker")
    config = app.config
    peer = app.extensions["data_collector"]
    relay = outbox.Relay(peer=peer, max_messages=config["OUTBOX_RELAY_BATCH_SIZE"])
    return Jobs(
        app,
        [
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
        ],
    )


def main() -> None:
    """Run the jobs alone until SIGTERM."""
    run_until_stopped(jobs())


if __name__ == "__main__":
    main()
