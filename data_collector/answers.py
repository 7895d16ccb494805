"""What the Data Collector answers, as the API document shows it.

Flights are built as JSON in PostgreSQL and the other answers as dicts;
these models describe their shape for the document and the fuzzing that
checks it, without being in the way of a request.
"""

from datetime import datetime
from typing import Literal

from pydantic import Field

from common.web.openapi import Answer
from data_collector.inputs import DIRECTIONS


class Interest(Answer):
    """An airport a user follows."""

    email: str
    airport_code: str
    airport_name: str | None
    created_at: datetime
    collection_waits_for_credits_until: datetime | None = Field(
        description="Set when the last collection cycle left this airport's requests for lack "
        "of the day's OpenSky credits (`OPENSKY_DAILY_CREDITS`): the next UTC midnight, when "
        "the count starts again and they are collected. Null when its collection does not wait."
    )


class Flight(Answer):
    """A flight as OpenSky reports it (seed table `flight_data`), with `type`.

    `type` says whether it is an arrival at the airport asked about (its time
    is `last_seen`) or a departure from it (its time is `first_seen`).
    """

    icao24: str
    first_seen: datetime
    est_departure_airport: str | None
    last_seen: datetime
    est_arrival_airport: str | None
    callsign: str | None
    est_departure_airport_horiz_distance: int | None
    est_departure_airport_vert_distance: int | None
    est_arrival_airport_horiz_distance: int | None
    est_arrival_airport_vert_distance: int | None
    departure_airport_candidates_count: int | None
    arrival_airport_candidates_count: int | None
    type: Literal[DIRECTIONS]


class AirportFlight(Flight):
    """A flight at `airport`: an arrival there (its time is `last_seen`) or a departure from it.

    A departure's time is its `first_seen`. A flight between two listed
    airports appears once for each, with its role there.
    """

    airport: str


class AverageWindow(Answer):
    """`[from, to)`: `days_requested` times 24 hours ending where collection has reached.

    That is the airport's `last collection`, at most the re-fetch gap before
    now, or now when nothing was collected.
    """

    from_: datetime = Field(alias="from")
    to: datetime
    ends_at: Literal["last collection", "now"]


class DirectionFigures(Answer):
    """One direction: its flights in the collected part of the window, and per day.

    The flights counted in the collected part of the window, that part in
    days, and flights per day over it (null when none of the window was
    collected).
    """

    flights: int
    days_covered: float = Field(ge=0)
    per_day: float | None


class Average(Answer):
    """Flights per day over the collected part of `window`.

    `days_covered` days, a `coverage` share of the window (the least covered
    direction's). A flight counts at its time at the airport (arrivals by
    `last_seen`, departures by `first_seen`): the ones
    `GET /flights/{airport_code}?since=<from>&until=<to>` lists, except any
    stored in a part of the window that was never collected.
    `average_flights_per_day` is the sum of the directions' `per_day`; null
    when one of them is. Each direction's figures are there only when that
    direction was asked for.
    """

    airport: str
    airport_name: str | None
    days_requested: int
    window: AverageWindow
    days_covered: float = Field(ge=0)
    coverage: float = Field(ge=0, le=1)
    arrivals: DirectionFigures = None
    departures: DirectionFigures = None
    arrivals_per_day: float | None = None
    departures_per_day: float | None = None
    average_flights_per_day: float | None


class RetryRange(Answer):
    """A range whose fetch failed, and when it is asked for again.

    OpenSky's endpoint, the airport (null for a `/flights/all` window), the
    range, how many times in a row it failed, and when it is asked for again.
    """

    endpoint: Literal["all", "arrival", "departure"]
    airport: str | None
    begin: datetime
    end: datetime
    attempts: int
    first_failed_at: datetime
    next_attempt_at: datetime
    last_error: str


class Retries(Answer):
    """Ranges waiting to be asked for again after a failure (`ranges`: the due soonest).

    Retried independently of the periodic cycle.
    """

    waiting: int
    next_attempt_at: datetime | None
    ranges: list[RetryRange]


class LastCycle(Answer):
    """The last collection cycle."""

    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    mode: str | None
    requests: int | None
    credits_spent: int | None
    flights_stored: int | None


class Reconciliation(Answer):
    """The last pass that removed the interests of users the User Manager no longer knows.

    ``refused``: it found more such users than a pass may remove (the User
    Manager may have lost them) and removed nothing; ``stopped``: the User
    Manager could not answer.
    """

    ran_at: datetime | None
    outcome: Literal["done", "refused", "stopped"] | None
    removed: int | None
    unknown_users: int | None
    users: int | None


class OpenSkyFacts(Answer):
    """What the collector knows about OpenSky.

    The credits left at its last request, until when it must wait after a
    429, since when the /flights/all sweep is known to miss flights (then it
    collects per airport), the ranges waiting for a retry, and the last cycle.
    """

    credits_remaining: int | None
    credits_spent_today: int
    over_budget_today: bool
    credits_checked_at: datetime | None
    retry_after: datetime | None
    sweep_unreliable_since: datetime | None
    interest_reconciliation: Reconciliation
    retries: Retries
    last_cycle: LastCycle


# What /health shows under the service's key (common.web.health finds it by this name).
HealthFacts = OpenSkyFacts
