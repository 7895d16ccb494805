"""User Manager settings, read from the environment with local-stack defaults."""

from common.config import (
    database_engine_options,
    env_bool,
    env_float,
    env_int,
    env_str,
    sqlalchemy_url,
    web_threads,
    web_workers,
)


class Config:
    """Everything the User Manager reads from its environment, read when instantiated."""

    def __init__(self) -> None:
        self.SQLALCHEMY_DATABASE_URI = sqlalchemy_url(
            env_str("USER_MANAGER_DATABASE_URL", required=True)
        )
        self.SQLALCHEMY_ENGINE_OPTIONS = database_engine_options()
        self.BIND_HOST = env_str("BIND_HOST", "0.0.0.0")
        self.HTTP_PORT = env_int("USER_MANAGER_HTTP_PORT", 5001, minimum=1)
        self.GRPC_PORT = env_int("USER_MANAGER_GRPC_PORT", 50051, minimum=1)
        self.WEB_WORKERS = web_workers()
        self.WEB_THREADS = web_threads()
        # Threads of the gRPC server; each CheckUserExists is one indexed lookup.
        self.GRPC_WORKERS = env_int("GRPC_WORKERS", 8, minimum=1)
        self.DATA_COLLECTOR_GRPC_ADDR = env_str("DATA_COLLECTOR_GRPC_ADDR", "localhost:50052")
        # A gRPC call between two services on one network answers in milliseconds;
        # two seconds bounds how long a client request waits for a sick peer.
        self.GRPC_TIMEOUT_SECONDS = env_float("GRPC_TIMEOUT_SECONDS", 2.0, minimum=0.1)
        # Worst case for one request before gunicorn recycles the worker.
        self.REQUEST_TIMEOUT_SECONDS = env_int("REQUEST_TIMEOUT_SECONDS", 30, minimum=1)
        # User bodies are a few hundred bytes; 64 KiB leaves room and stops abuse early (413).
        self.MAX_CONTENT_LENGTH = 64 * 1024
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
        self.DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 60, minimum=1)

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
