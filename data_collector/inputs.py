"""What clients may send the Data Collector, and the 400 each mistake gets.

The interest bodies (with thresholds), airport codes in paths, and the
query parameters of the flight lists (``type``, ``since``, ``until``,
``days``): each reader returns the normalized value or raises an
:class:`~common.web.errors.ApiError`. The path and query models only
document, for the API document, what the readers read.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    create_model,
    field_validator,
)

from common.airports import normalize_airport_code
from common.emails import normalize_email
from common.web.errors import ApiError
from common.web.inputs import parse_model, whole_number
from data_collector.models import THRESHOLD_MAX

# The ``type`` query parameter and the direction each value stands for.
FLIGHT_TYPES = {"arrivals": "arrival", "departures": "departure"}
DIRECTIONS = tuple(FLIGHT_TYPES.values())
UNIX_SECONDS = re.compile(r"[0-9]{1,11}(\.[0-9]{1,6})?")
# The average looks back a week unless ``days`` asks for another number of days.
DEFAULT_AVERAGE_DAYS = 7


class InterestRequest(BaseModel):
    """The body of ``DELETE /interests``: which interest."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "mario.rossi@example.com", "airport_code": "LIRF"}]
        },
    )

    email: StrictStr = Field(description="The user's email (any case).")
    airport_code: StrictStr = Field(
        description="ICAO code of a known airport (any case), e.g. `LIRF`."
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value.strip())

    @field_validator("airport_code")
    @classmethod
    def _airport_code(cls, value: str) -> str:
        return normalize_airport_code(value)


# A threshold: a whole number of flights (JSON true, 3.5 or "3" are refused, not converted).
Threshold = Annotated[StrictInt, Field(ge=0, le=THRESHOLD_MAX)] | None
THRESHOLDS = ("high_value", "low_value")
HIGH_VALUE = (
    "Upper threshold: an email when the airport's flights over its alert window go above it "
    "(integer >= 0, greater than `low_value`; null or left out: none)."
)
LOW_VALUE = (
    "Lower threshold: an email when the airport's flights over its alert window go under it "
    "(integer >= 0, less than `high_value`; null or left out: none)."
)


class NewInterest(InterestRequest):
    """The body of ``POST /interests``: the interest, with thresholds if wanted."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"email": "mario.rossi@example.com", "airport_code": "LIRF"},
                {
                    "email": "mario.rossi@example.com",
                    "airport_code": "LIRF",
                    "high_value": 1200,
                    "low_value": 300,
                },
            ]
        },
    )

    high_value: Threshold = Field(None, description=HIGH_VALUE)
    low_value: Threshold = Field(None, description=LOW_VALUE)


class ThresholdsChange(InterestRequest):
    """The body of ``PUT /interests``: new thresholds of an interest.

    A threshold given replaces the stored one (`null` clears it); one left
    out keeps its value. At least one must be given.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "mario.rossi@example.com",
                    "airport_code": "LIRF",
                    "high_value": 1500,
                    "low_value": None,
                }
            ]
        },
    )

    high_value: Threshold = Field(
        None, description="The new upper threshold (integer >= 0); null clears it; left out: kept."
    )
    low_value: Threshold = Field(
        None, description="The new lower threshold (integer >= 0); null clears it; left out: kept."
    )

    def changes(self) -> dict[str, int | None]:
        """Return the thresholds the body gives (a null one clears), without those left out."""
        return {name: getattr(self, name) for name in THRESHOLDS if name in self.model_fields_set}


def require_threshold_order(high_value: int | None, low_value: int | None) -> None:
    """Raise a 400 naming both thresholds unless the upper one is above the lower one."""
    if high_value is None or low_value is None or high_value > low_value:
        return
    raise ApiError(
        400,
        "Invalid request: check high_value, low_value.",
        details={
            "high_value": f"must be greater than low_value ({low_value})",
            "low_value": f"must be less than high_value ({high_value})",
        },
    )


def new_interest(body: Any) -> NewInterest:
    """Read the body of ``POST /interests``, or raise a 400 naming every field to fix."""
    data = parse_model(NewInterest, body)
    require_threshold_order(data.high_value, data.low_value)
    return data


def thresholds_change(body: Any) -> ThresholdsChange:
    """Read the body of ``PUT /interests``, or raise a 400 naming every field to fix.

    The order of the thresholds is checked once merged with the stored ones
    (:func:`data_collector.interests.change_thresholds`).
    """
    data = parse_model(ThresholdsChange, body)
    if not data.changes():
        raise ApiError(
            400,
            "Invalid request: check high_value, low_value.",
            details={
                name: "give high_value, low_value or both (null clears one)" for name in THRESHOLDS
            },
        )
    return data


AIRPORT = Field(description="ICAO code of a known airport (any case).", examples=["LIRF"])
TIME_FORMAT = "ISO 8601 (UTC when no offset is given, e.g. `2026-01-31T12:00:00Z`) or Unix seconds"


class EmailPath(BaseModel):
    """The user a path names."""

    email: str = Field(
        description="The user's email (any case).", examples=["mario.rossi@example.com"]
    )


class AirportCodePath(BaseModel):
    """The airport a flight list is about."""

    airport_code: str = AIRPORT


class IcaoPath(BaseModel):
    """The airport a last flight or an average is about."""

    icao: str = AIRPORT


class TypeQuery(BaseModel):
    """Which directions to answer with."""

    type: Literal[tuple(FLIGHT_TYPES)] = Field(
        None, description="Only arrivals or only departures (default: both)."
    )


class FlightFilters(TypeQuery):
    """The filters of the flight lists."""

    since: str = Field(
        None,
        description=f"Only flights at or after this time: {TIME_FORMAT}.",
        examples=["2026-01-30T00:00:00Z"],
    )
    until: str = Field(
        None,
        description=f"Only flights before this time: {TIME_FORMAT}.",
        examples=["1769904000"],
    )


class UserQuery(BaseModel):
    """The user whose airports to list."""

    email: str = Field(
        None,
        description="The user whose airports to list (any case); leave out for every airport.",
        examples=["mario.rossi@example.com"],
    )


def days_query(config: Mapping[str, Any]) -> type[BaseModel]:
    """Return the model of the average's ``days``, bounded by ``RETENTION_DAYS``."""
    days = config["RETENTION_DAYS"]
    return create_model(
        "DaysQuery",
        days=(
            int,
            Field(
                DEFAULT_AVERAGE_DAYS,
                ge=1,
                le=days,
                description="How many days (24 hours each) back from the last collection: 1 to "
                f"{days} (`RETENTION_DAYS`; default {DEFAULT_AVERAGE_DAYS}).",
                examples=[7],
            ),
        ),
    )


def path_airport_code(value: str) -> str:
    """Normalize an airport code from a URL, or raise a 400 saying why it is refused."""
    try:
        return normalize_airport_code(value)
    except ValueError as error:
        raise ApiError(400, f"Invalid airport code '{value}': {error}.") from None


def flight_types(raw: str | None) -> tuple[str, ...]:
    """Return the directions a ``type`` parameter asks for (none: both), or raise a 400.

    An empty ``type=`` is refused like any other unknown value (as ``limit=`` and
    ``days=`` are): leave the parameter out to get both directions.
    """
    if raw is None:
        return DIRECTIONS
    if raw not in FLIGHT_TYPES:
        raise ApiError(400, "type must be arrivals or departures.", details={"type": raw})
    return (FLIGHT_TYPES[raw],)


def instant(name: str, raw: str | None) -> datetime | None:
    """Read an ISO 8601 time (UTC when it names no offset) or Unix seconds, or raise a 400."""
    if raw is None or raw == "":
        return None
    try:
        if UNIX_SECONDS.fullmatch(raw):
            return datetime.fromtimestamp(float(raw), UTC)
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ApiError(
            400,
            f"{name} must be an ISO 8601 time (e.g. 2026-01-31T12:00:00Z) or Unix seconds.",
            details={name: raw},
        ) from None


def time_range(since_raw: str | None, until_raw: str | None):
    """Read ``since`` and ``until``; raise a 400 unless ``since`` comes first."""
    since, until = instant("since", since_raw), instant("until", until_raw)
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "since must be before until.")
    return since, until


def average_days(raw: str | None) -> int:
    """Read ``days`` of an average: 1 to ``RETENTION_DAYS``, 7 when absent."""
    if raw is None:
        return DEFAULT_AVERAGE_DAYS
    return whole_number("days", raw, minimum=1, maximum=current_app.config["RETENTION_DAYS"])
