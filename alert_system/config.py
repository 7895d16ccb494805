"""Alert System settings, read from the environment with local-stack defaults."""

from typing import ClassVar

from pydantic import Field

from common.broker.streams import RETENTION_SECONDS
from common.settings import MAX_RETENTION_DAYS, BrokerSettings, ServiceSettings, named_after

STREAM_RETENTION_DAYS = RETENTION_SECONDS // 86400


class Settings(ServiceSettings, BrokerSettings):
    """Everything the Alert System reads from its environment, read when instantiated."""

    model_config = named_after("ALERT_SYSTEM", http_port=5004)

    # A removed interest is remembered this long, so an event about it that was already on
    # its way (in a stream, in the collector's outbox) never revives it: longer than the
    # streams keep a message, or a late redelivery could come after it is forgotten.
    REMOVED_INTEREST_RETENTION_DAYS: int = Field(
        14, ge=STREAM_RETENTION_DAYS, le=MAX_RETENTION_DAYS
    )
    # How often the forgotten ones are deleted: once an hour keeps the table small.
    REMOVED_INTEREST_REAPER_INTERVAL_SECONDS: ClassVar[int] = 3600
