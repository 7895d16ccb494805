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


class AlertWindow(Answer):
    """The figure compared with the thresholds: the airport's flights over its alert window.

    The window is the most recent whole UTC day (`start` to `end`) whose arrivals and
    departures are both fully collected and settled (fetched again at least
    `COLLECT_REFRESH_DAYS` after the day ended, once OpenSky's nightly batch filled
    its arrivals); a day partly collected never is. `flights` is `arrivals` (by
    `last_seen`) plus `departures` (by `first_seen`), as `/flights/average` counts them.
    """

    start: datetime
    end: datetime
    arrivals: int = Field(ge=0)
    departures: int = Field(ge=0)
    flights: int = Field(ge=0)


class AlertStatus(Answer):
    """Where the airport stands against the interest's thresholds, as the Alert System said.

    `condition`: `inside` the thresholds, `above` the upper one or `below` the lower one
    (null until first evaluated), since `since`; `last_email_at`: when the mail server
    accepted the last alert email (null: none yet).
    """

    condition: Literal["inside", "above", "below"] | None
    since: datetime | None
    last_email_at: datetime | None


class Interest(Answer):
    """An airport a user follows, with its thresholds and alert state."""

    email: str
    airport_code: str
    airport_name: str | None
    created_at: datetime
    collection_waits_for_credits_until: datetime | None = Field(
        description="Set when the last collection cycle left this airport's requests for lack "
        "of the day's OpenSky credits (`OPENSKY_DAILY_CREDITS`): the next UTC midnight, when "
        "the count starts again and they are collected. Null when its collection does not wait."
    )
    high_value: int | None = Field(
        description="Upper threshold: an email when `alert_window.flights` goes above it "
        "(null: none)."
    )
    low_value: int | None = Field(
        description="Lower threshold: an email when `alert_window.flights` goes under it "
        "(null: none)."
    )
    alert_window: AlertWindow | None = Field(
        description="The airport's figure over its alert window, the one compared with the "
        "thresholds (null until a day is fully collected)."
    )
    alert_state: AlertStatus


class Flight(Answer):
    """A flight as OpenSky reports it (a `flight_data` row without its `id`), with `type`.

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


class CircuitBreaker(Answer):
    """The circuit breaker around every OpenSky call, as the last cycle left it.

    `open`: `OPENSKY_BREAKER_FAILURES` calls failed in a row (timeouts, connection
    errors, 5xx): no call before `trial_after`, then one trial call (`half-open` while it
    runs): its answer closes the breaker, its failure opens it again. What was not
    collected meanwhile is asked for once it is closed; no alert is computed from it.
    """

    state: Literal["closed", "open", "half-open"]
    failures_in_a_row: int = Field(ge=0)
    opened_at: datetime | None
    trial_after: datetime | None


class OpenSkyFacts(Answer):
    """What the collector knows about OpenSky.

    The credits left at its last request, until when it must wait after a
    429, since when the /flights/all sweep is known to miss flights (then it
    collects per airport), the ranges waiting for a retry, the circuit breaker
    around OpenSky, and the last cycle.
    """

    credits_remaining: int | None
    credits_spent_today: int
    over_budget_today: bool
    credits_checked_at: datetime | None
    retry_after: datetime | None
    sweep_unreliable_since: datetime | None
    interest_reconciliation: Reconciliation
    retries: Retries
    circuit_breaker: CircuitBreaker
    last_cycle: LastCycle


# What /health shows under the service's key (common.web.health finds it by this name).
HealthFacts = OpenSkyFacts
