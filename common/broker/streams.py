"""The broker's subjects, and the JetStream streams that keep them.

Each subject has one stream, stored on disk, and one consuming service
(a durable consumer its replicas share). Messages are kept for
``RETENTION_SECONDS`` whether or not they were consumed, so an operator can
look at what passed; a consumer reads from where it left off.
"""

from dataclasses import dataclass

# The collector's updates of an airport's flights, for the Alert System to evaluate.
TO_ALERT_SYSTEM = "to-alert-system"
# Crossings of a user's threshold, for the Alert Notifier to email.
TO_NOTIFIER = "to-notifier"
# Alert states and sent emails, for the Data Collector to show beside each interest.
TO_DATA_COLLECTOR = "to-data-collector"
# Breaches of the SLA, for the Alert Notifier to email to the operator.
SLA_BREACH = "sla-breach"
# A message that kept failing is parked under this prefix and its subject.
DEAD_LETTER_PREFIX = "dead-letter."

# A republished message (a relay that died between publishing and recording it) comes back
# within seconds; an hour also covers a relay that waited out a long broker outage.
DUPLICATE_WINDOW_SECONDS = 3600
# A week of history: enough to see what happened over a weekend; consumers never need it.
RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Stream:
    """A JetStream stream: its name and the subjects it keeps."""

    name: str
    subjects: tuple[str, ...]


STREAMS = (
    Stream("TO_ALERT_SYSTEM", (TO_ALERT_SYSTEM,)),
    Stream("TO_NOTIFIER", (TO_NOTIFIER,)),
    Stream("TO_DATA_COLLECTOR", (TO_DATA_COLLECTOR,)),
    Stream("SLA_BREACH", (SLA_BREACH,)),
    Stream("DEAD_LETTERS", (f"{DEAD_LETTER_PREFIX}>",)),
)
DEAD_LETTERS = STREAMS[-1]


def stream_of(subject: str) -> Stream:
    """Return the stream that keeps ``subject``."""
    if subject.startswith(DEAD_LETTER_PREFIX):
        return DEAD_LETTERS
    return next(stream for stream in STREAMS if subject in stream.subjects)


def dead_letter_subject(subject: str) -> str:
    """Return where a message of ``subject`` is parked when it keeps failing."""
    return DEAD_LETTER_PREFIX + subject


async def ensure_streams(js, *, replicas: int) -> None:
    """Create every stream, or bring an existing one to this configuration (idempotent).

    ``replicas``: copies of each stream in a clustered broker (1 for a single server).
    """
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    for stream in STREAMS:
        config = StreamConfig(
            name=stream.name,
            subjects=list(stream.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=RETENTION_SECONDS,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            num_replicas=replicas,
        )
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
