"""User Manager settings, read from the environment with local-stack defaults."""

from typing import ClassVar

from pydantic import Field

from common.settings import MAX_RETENTION_DAYS, ServiceSettings, named_after


class Settings(ServiceSettings):
    """Everything the User Manager reads from its environment, read when instantiated."""

    model_config = named_after("USER_MANAGER", http_port=5001, grpc_port=50051)

    DATA_COLLECTOR_GRPC_ADDR: str = "localhost:50052"
    # User bodies are a few hundred bytes; 64 KiB leaves room and stops abuse early (413).
    MAX_CONTENT_LENGTH: ClassVar[int] = 64 * 1024

    # At-most-once: a retry comes within minutes; 24 h is the customary window
    # (Stripe's) and keeps the table to one day of writes.
    IDEMPOTENCY_KEY_RETENTION_HOURS: float = Field(24.0, ge=0.01, le=MAX_RETENTION_DAYS * 24)
    # Expiry is enforced when a key is reused; the reaper only reclaims space,
    # so running it every ten minutes is plenty.
    IDEMPOTENCY_REAPER_INTERVAL_SECONDS: ClassVar[int] = 600
    # One short transaction per batch: never a long lock on the key table.
    IDEMPOTENCY_REAPER_BATCH_SIZE: ClassVar[int] = 1000

    # Outbox relay: how often it looks for calls the request could not deliver.
    # A few seconds keeps a recovered Data Collector's backlog short.
    OUTBOX_RELAY_INTERVAL_SECONDS: float = Field(5.0, ge=0.1)
    # Retries back off exponentially from one second up to this ceiling, so a peer
    # that is down for hours is asked every five minutes, not hammered.
    OUTBOX_MAX_BACKOFF_SECONDS: float = Field(300.0, ge=1)
    # Deliveries per relay run: bounds one run; the next run continues.
    OUTBOX_RELAY_BATCH_SIZE: ClassVar[int] = 500
    # How often the worker logs a non-empty backlog (each failure is logged too).
    OUTBOX_BACKLOG_LOG_INTERVAL_SECONDS: ClassVar[int] = 60

    # TEST ONLY: honour the X-Fault-Inject header (crash a worker at a fault point).
    # Never enable in production: any client could kill workers.
    FAULT_INJECTION_ENABLED: bool = False

    # Upper case: Flask copies upper-case attributes into the app's configuration.
    @property
    def OUTBOX_HANDOFF_SECONDS(self) -> float:  # noqa: N802
        """How long the relay leaves a fresh message to the request that wrote it.

        The request delivers its own message right after commit; waiting one
        gRPC deadline and five seconds more keeps the two from both trying it.
        """
        return self.GRPC_TIMEOUT_SECONDS + 5
