"""User Manager settings, read from the environment with local-stack defaults."""

from common.settings import BaseConfig, env_bool, env_float, env_int, env_str


class Config(BaseConfig):
    """Everything the User Manager reads from its environment, read when instantiated."""

    DATABASE_URL_VARIABLE = "USER_MANAGER_DATABASE_URL"
    MIGRATION_DATABASE_URL_VARIABLE = "USER_MANAGER_MIGRATION_DATABASE_URL"
    PUBLIC_URL_VARIABLE = "USER_MANAGER_PUBLIC_URL"

    def __init__(self) -> None:
        super().__init__()
        self.HTTP_PORT = env_int("USER_MANAGER_HTTP_PORT", 5001, minimum=1)
        self.GRPC_PORT = env_int("USER_MANAGER_GRPC_PORT", 50051, minimum=1)
        self.DATA_COLLECTOR_GRPC_ADDR = env_str("DATA_COLLECTOR_GRPC_ADDR", "localhost:50052")
        # User bodies are a few hundred bytes; 64 KiB leaves room and stops abuse early (413).
        self.MAX_CONTENT_LENGTH = 64 * 1024

        # At-most-once: a retry comes within minutes; 24 h is the customary window
        # (Stripe's) and keeps the table to one day of writes.
        self.IDEMPOTENCY_KEY_RETENTION_HOURS = env_float(
            "IDEMPOTENCY_KEY_RETENTION_HOURS", 24.0, minimum=0.01
        )
        # Expiry is enforced when a key is reused; the reaper only reclaims space,
        # so running it every ten minutes is plenty.
        self.IDEMPOTENCY_REAPER_INTERVAL_SECONDS = 600
        # One short transaction per batch: never a long lock on the key table.
        self.IDEMPOTENCY_REAPER_BATCH_SIZE = 1000

        # Outbox relay: how often it looks for calls the request could not deliver.
        # A few seconds keeps a recovered Data Collector's backlog short.
        self.OUTBOX_RELAY_INTERVAL_SECONDS = env_float(
            "OUTBOX_RELAY_INTERVAL_SECONDS", 5.0, minimum=0.1
        )
        # Retries back off exponentially from one second up to this ceiling, so a peer
        # that is down for hours is asked every five minutes, not hammered.
        self.OUTBOX_MAX_BACKOFF_SECONDS = env_float("OUTBOX_MAX_BACKOFF_SECONDS", 300.0, minimum=1)
        # The request delivers its own message right after commit; the relay leaves a
        # fresh message alone this long so the two do not both try it.
        self.OUTBOX_HANDOFF_SECONDS = self.GRPC_TIMEOUT_SECONDS + 5
        # Deliveries per relay run: bounds one run; the next run continues.
        self.OUTBOX_RELAY_BATCH_SIZE = 500
        # How often the worker logs a non-empty backlog (each failure is logged too).
        self.OUTBOX_BACKLOG_LOG_INTERVAL_SECONDS = 60

        # TEST ONLY: honour the X-Fault-Inject header (crash a worker at a fault point).
        # Never enable in production: any client could kill workers.
        self.FAULT_INJECTION_ENABLED = env_bool("FAULT_INJECTION_ENABLED", False)
