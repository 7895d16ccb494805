"""The alerts pipeline's messages: one model per kind, for the writer and the reader alike.

Each subject carries JSON objects with a ``kind``:

- ``to-alert-system`` (the Data Collector): ``flights``, an airport's figure
  over its alert window with the interests that follow it and their
  thresholds (at most :data:`MAX_FOLLOWERS_PER_EVENT` per message: a larger
  airport is sent in ``parts``), and ``removed``, interests that were deleted;
- ``to-notifier`` (the Alert System): ``crossing``, an interest whose figure
  went over its upper or under its lower threshold;
- ``sla-breach`` (the SLA detector): ``sla-breach``, for the operator's inbox;
- ``to-data-collector`` (the Alert System and the Notifier): ``alert-state``,
  an interest's condition and its version, and ``emailed``, a receipt for
  the email of a crossing (the collector reads both with
  :data:`DATA_COLLECTOR_REPORT`).

A reader ignores fields it does not know, so a writer may add one without
breaking it. Every message id is derived from the content (:func:`content_id`
or a kind's own rule), so a message published twice is a duplicate the
broker drops within its window and the reader's handler treats as one.

Times are aware datetimes, written as ISO 8601 in UTC with ``Z``.
``committed_at``, on ``flights`` and carried on to its ``crossing``, is when
the collector committed the data (or the thresholds) the event reports: the
Alert System orders events of one interest by it, and the Notifier measures
the latency from it to the mail server's acceptance.
"""

import hashlib
import json
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, TypeAdapter

from common.broker.connection import Message
from common.emails import EMAIL_MAX_LENGTH, ENCODED_WORD, normalize_email

# A flights event lists at most this many followers: a message stays under NATS's default
# 1 MB limit (a follower is about 100 bytes), and an airport followed by more is several parts.
MAX_FOLLOWERS_PER_EVENT = 1000
# A removed event lists at most this many ids: a user has at most MAX_INTERESTS_PER_USER,
# and a reconciliation pass removes a few; a larger deletion is several messages. A reader
# refuses more: one statement binds at most 65,535 values, and a batch binds every id it
# names.
MAX_IDS_PER_EVENT = 1000

# What the services' tables hold: a message with a longer value could never be stored, so it
# is refused (parked) when read, instead of failing its whole batch's transaction for ever.
# An ICAO code has four characters; OpenSky reports some longer local codes.
AIRPORT_LENGTH = 8
# A crossing's or a breach's id: a SHA-256 in hex, with room for another scheme.
ID_LENGTH = 80
# Letters and digits only: a code goes into an email's Subject.
Airport = Annotated[str, Field(min_length=1, max_length=AIRPORT_LENGTH, pattern=r"^[A-Za-z0-9]+$")]
# A follower's address as stored: lenient (older rules' rows), but PostgreSQL stores no NUL,
# so an address holding one is no row's, and would fail its whole batch's transaction.
Address = Annotated[str, Field(min_length=3, max_length=EMAIL_MAX_LENGTH, pattern=r"^[^\x00]+$")]
# What an email's headers and text show: an airport's name, a metric's name (a few dozen
# characters) and its query (the SLA detector's own bound).
LINE_MAX_LENGTH = 200
QUERY_MAX_LENGTH = 2000


def one_address(value: str) -> str:
    """Return the one address ``value`` is, normalized; refuse a list, a name or a line break.

    The mail library sends to every address the To header lists, so a
    recipient is checked as strictly as the addresses users register.
    """
    return normalize_email(value)


def one_line(value: str) -> str:
    """Return ``value`` unless it holds a character that breaks a line or controls a terminal.

    A header with a line break would be a header of the sender's choosing; the
    mail library refuses it by raising, which must never reach the consumer.
    """
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
        raise ValueError("must be one line of printable characters")
    if ENCODED_WORD in value:
        # The mail library decodes an encoded word it finds in a header, line breaks and all.
        raise ValueError(f"must not contain {ENCODED_WORD!r}")
    return value


def in_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC, or refuse it when UTC cannot hold it.

    Python reads offsets up to 24 hours, PostgreSQL stores them only up to
    15:59: a time kept with its offset would fail its batch's transaction at
    every delivery.
    """
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time whose UTC year is between 1 and 9999") from None


Recipient = Annotated[str, Field(max_length=EMAIL_MAX_LENGTH), AfterValidator(one_address)]
Line = Annotated[str, Field(min_length=1, max_length=LINE_MAX_LENGTH), AfterValidator(one_line)]
# Ids are keys of the notifier's records, so one line: PostgreSQL stores no NUL, say.
Id = Annotated[str, Field(min_length=1, max_length=ID_LENGTH), AfterValidator(one_line)]
Moment = Annotated[AwareDatetime, AfterValidator(in_utc)]

CONDITIONS = ("inside", "above", "below")
Condition = Literal["inside", "above", "below"]
# The threshold each condition crosses.
THRESHOLD_OF = {"above": "high_value", "below": "low_value"}
# Figures and thresholds are stored as 32-bit integers, interest ids as 64-bit ones.
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
InterestId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Window(BaseModel):
    """The period a figure counts: from ``start`` (included) to ``end`` (excluded)."""

    start: Moment
    end: Moment


class Follower(BaseModel):
    """An interest in the airport: who, and the thresholds (None: that side never fires)."""

    interest_id: InterestId
    # As stored (rows of older rules included); a crossing checks it as a recipient.
    email: Address
    high_value: Count | None = None
    low_value: Count | None = None


class FlightsEvent(BaseModel):
    """An airport's number of flights over its alert window, for the interests that follow it."""

    kind: Literal["flights"]
    airport: Airport
    window: Window
    arrivals: Count
    departures: Count
    flights: Count
    followers: list[Follower] = Field(max_length=MAX_FOLLOWERS_PER_EVENT)
    part: int = Field(1, ge=1, le=2**31 - 1)
    parts: int = Field(1, ge=1, le=2**31 - 1)
    committed_at: Moment | None = None


class RemovedEvent(BaseModel):
    """Interests that were deleted: none of them is evaluated, or emailed, again."""

    kind: Literal["removed"]
    interest_ids: list[InterestId] = Field(max_length=MAX_IDS_PER_EVENT)


class Crossing(BaseModel):
    """A condition that started: an interest's figure over its upper or under its lower threshold.

    ``crossing_id`` names the condition (the interest and the version of its
    state), so every delivery of the same crossing is the same email.
    """

    kind: Literal["crossing"] = "crossing"
    crossing_id: Id
    interest_id: InterestId
    email: Recipient
    airport: Airport
    airport_name: Line
    condition: Literal["above", "below"]
    threshold: Literal["high_value", "low_value"]
    limit: Count
    value: Count
    window: Window
    since: Moment
    committed_at: Moment | None = None


class SlaBreach(BaseModel):
    """A metric out of its range often enough to be an incident, for the operator."""

    kind: Literal["sla-breach"]
    breach_id: Id
    to: Recipient
    metric: Line
    query: str = Field(min_length=1, max_length=QUERY_MAX_LENGTH)
    value: float
    violated: Literal["max", "min"]
    limit: float
    below: Count
    above: Count
    at: Moment


class AlertState(BaseModel):
    """An interest's condition since a moment; a higher ``version`` replaces a lower one."""

    kind: Literal["alert-state"] = "alert-state"
    interest_id: InterestId
    condition: Condition
    since: Moment
    # Stored as a 32-bit integer by the Alert System and the collector alike.
    version: Count
    value: Count
    window: Window


class Emailed(BaseModel):
    """The mail server accepted the email of a crossing."""

    kind: Literal["emailed"] = "emailed"
    interest_id: InterestId
    crossing_id: Id
    sent_at: Moment


AlertSystemEvent = Annotated[FlightsEvent | RemovedEvent, Field(discriminator="kind")]
NotifierMessage = Annotated[Crossing | SlaBreach, Field(discriminator="kind")]
DataCollectorReport = Annotated[AlertState | Emailed, Field(discriminator="kind")]
ALERT_SYSTEM_EVENT = TypeAdapter(AlertSystemEvent)
NOTIFIER_MESSAGE = TypeAdapter(NotifierMessage)
DATA_COLLECTOR_REPORT = TypeAdapter(DataCollectorReport)


def content_id(kind: str, payload: dict[str, Any]) -> str:
    """Return ``<kind>:`` and the SHA-256 of the payload's canonical JSON (a repeat has it too)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{kind}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def crossing_id(interest_id: int, version: int) -> str:
    """Return the id of the crossing that version ``version`` of an interest's state started."""
    return hashlib.sha256(f"{interest_id}:{version}".encode()).hexdigest()


def as_message(subject: str, model: BaseModel) -> Message:
    """Return ``model`` as a message on ``subject``, with the id its kind derives from it."""
    payload = model.model_dump(mode="json")
    if isinstance(model, Crossing):
        msg_id = f"crossing:{model.crossing_id}"
    elif isinstance(model, AlertState):
        msg_id = f"alert-state:{model.interest_id}:{model.version}"
    elif isinstance(model, Emailed):
        msg_id = f"emailed:{model.crossing_id}"
    else:
        msg_id = content_id(payload["kind"], payload)
    return Message(subject, msg_id, payload)
