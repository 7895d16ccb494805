"""The Data Collector's OpenAPI document (served at ``/openapi.json``, shown at ``/docs/``).

Built from the code: the interest body is ``inputs.InterestRequest``'s JSON
schema, flight types are ``inputs.FLIGHT_TYPES``, page sizes and the
average's window are the routes' constants and the app's ``RETENTION_DAYS``.
``tests/unit/test_openapi.py`` checks that every route is documented and
nothing else; the integration suite fuzzes the running service against it.
"""

from flask import Flask

from common.web.openapi import (
    DATE_TIME,
    INTEGER,
    STRING,
    Document,
    add_operations_for_operators,
    closed_object,
    error,
    json_body,
    nullable,
    page_parameters,
    path_parameter,
    query_parameter,
    ref,
    response,
    unavailable,
)
from data_collector import inputs, routes

DESCRIPTION = """\
Airports followed by users, and the flights collected for them from the OpenSky Network.

**Interests.** A user (who must exist in the User Manager, asked over gRPC) follows an
airport by its ICAO code (`LIRF`, `EGLL`, ...). A new interest asks the collector's worker
for a cycle at once; its flights appear within seconds to minutes (whatever OpenSky takes).

**Flights** are stored in UTC and served newest first: an arrival's time is its
`last_seen`, a departure's its `first_seen`. Averages count the last X times 24 hours up
to the last collection, divide by the part of them actually collected, and say which.

**Errors** are JSON, `{"error": "...", "details": {...}}`. **Lists** of flights are JSON
arrays; the next page's URL is in the `Link: <...>; rel="next"` header. Every response
carries `X-Request-ID`.
"""

EXAMPLE_INTEREST = {"email": "mario.rossi@example.com", "airport_code": "LIRF"}
FLIGHT_INTEGERS = (
    "est_departure_airport_horiz_distance",
    "est_departure_airport_vert_distance",
    "est_arrival_airport_horiz_distance",
    "est_arrival_airport_vert_distance",
    "departure_airport_candidates_count",
    "arrival_airport_candidates_count",
)


def build_document(app: Flask) -> dict:
    """Return the OpenAPI document of the Data Collector app ``app``."""
    doc = Document(
        title="Data Collector API",
        description=DESCRIPTION,
        tags=[
            {"name": "interests", "description": "Which airports each user follows."},
            {"name": "flights", "description": "Collected flights, last flights, averages."},
            {"name": "collection", "description": "The OpenSky collection worker."},
            {"name": "operations", "description": "Probes, metrics and this document."},
        ],
    )
    max_body = app.config["MAX_CONTENT_LENGTH"]
    max_days = app.config["RETENTION_DAYS"]
    interest_body = json_body(
        doc.model(
            inputs.InterestRequest,
            email={"description": "The user's email (any case)."},
            airport_code={
                "description": "ICAO code of a known airport (any case), e.g. `LIRF`.",
            },
        ),
        EXAMPLE_INTEREST,
    )
    interest = doc.schema(
        "Interest",
        closed_object(
            {
                "email": STRING,
                "airport_code": STRING,
                "airport_name": nullable(STRING),
                "created_at": DATE_TIME,
                "collection_waits_for_credits_until": {
                    **nullable(DATE_TIME),
                    "description": "Set when the last collection cycle left this airport's "
                    "requests for lack of the day's OpenSky credits (`OPENSKY_DAILY_CREDITS`): "
                    "the next UTC midnight, when the count starts again and they are "
                    "collected. Null when its collection does not wait.",
                },
            }
        ),
    )
    flight_fields = {
        "icao24": STRING,
        "first_seen": DATE_TIME,
        "est_departure_airport": nullable(STRING),
        "last_seen": DATE_TIME,
        "est_arrival_airport": nullable(STRING),
        "callsign": nullable(STRING),
        **dict.fromkeys(FLIGHT_INTEGERS, nullable(INTEGER)),
    }
    kind = {"type": "string", "enum": sorted(inputs.FLIGHT_TYPES.values())}
    flight = doc.schema(
        "Flight",
        closed_object(
            {**flight_fields, "type": kind},
            description="A flight as OpenSky reports it (seed table `flight_data`), with "
            "`type`: whether it is an arrival at the airport asked about (its time is "
            "`last_seen`) or a departure from it (its time is `first_seen`).",
        ),
    )
    airport_flight = doc.schema(
        "AirportFlight",
        closed_object(
            {**flight_fields, "airport": STRING, "type": kind},
            description="A flight at `airport`: an arrival there (its time is `last_seen`) "
            "or a departure from it (its time is `first_seen`). A flight between two "
            "listed airports appears once for each, with its role there.",
        ),
    )
    per_day = nullable({"type": "number"})
    days_number = {"type": "number", "minimum": 0}
    direction_figures = closed_object(
        {"flights": INTEGER, "days_covered": days_number, "per_day": per_day},
        description="One direction: the flights counted in the collected part of the "
        "window, that part in days, and flights per day over it (null when none of the "
        "window was collected).",
    )
    average = doc.schema(
        "Average",
        closed_object(
            {
                "airport": STRING,
                "airport_name": nullable(STRING),
                "days_requested": INTEGER,
                "window": closed_object(
                    {
                        "from": DATE_TIME,
                        "to": DATE_TIME,
                        "ends_at": {"type": "string", "enum": ["last collection", "now"]},
                    },
                    description="`[from, to)`: `days_requested` times 24 hours ending where "
                    "collection of the airport has reached (`last collection`, at most the "
                    "re-fetch gap before now), or now when nothing was collected.",
                ),
                "days_covered": days_number,
                "coverage": {"type": "number", "minimum": 0, "maximum": 1},
                "arrivals": direction_figures,
                "departures": direction_figures,
                "arrivals_per_day": per_day,
                "departures_per_day": per_day,
                "average_flights_per_day": per_day,
            },
            # Each direction's figures are there only when that direction was asked for.
            optional=("arrivals", "departures", "arrivals_per_day", "departures_per_day"),
            description="Flights per day over the collected part of `window`: "
            "`days_covered` days, a `coverage` share of the window (the least covered "
            "direction's). A flight counts at its time at the airport (arrivals by "
            "`last_seen`, departures by `first_seen`): the ones "
            "`GET /flights/{airport_code}?since=<from>&until=<to>` lists, except any stored "
            "in a part of the window that was never collected. "
            "`average_flights_per_day` is the sum of the directions' `per_day`; null when "
            "one of them is.",
        ),
    )
    email = path_parameter(
        "email", "The user's email (any case).", {"type": "string"}, "mario.rossi@example.com"
    )

    def airport(name: str):
        return path_parameter(
            name, "ICAO code of a known airport (any case).", {"type": "string"}, "LIRF"
        )

    flight_type = query_parameter(
        "type",
        "Only arrivals or only departures (default: both).",
        {"type": "string", "enum": sorted(inputs.FLIGHT_TYPES)},
    )
    bad_airport = "An airport code that is not the ICAO code of a known airport"
    body_errors = {
        400: error("A body that is not a JSON object, or invalid fields (`details` names each)."),
        413: error(f"The body is larger than {max_body} bytes."),
        415: error("The body is not declared as JSON (`Content-Type: application/json`)."),
    }

    doc.operation(
        "POST",
        "/interests",
        summary="Follow an airport for a user",
        tag="interests",
        description="The user is checked in the User Manager over gRPC. A new interest "
        "starts a collection cycle for the airport soon after; if the day's OpenSky credits "
        "do not cover all of it, `GET /interests/{email}` says until when the rest waits "
        "(`collection_waits_for_credits_until`).",
        body=interest_body,
        responses={
            201: response(
                "Followed; collection starts shortly.",
                ref("schemas", "Message"),
                example={"message": "Interest added and data fetch initiated"},
            ),
            200: response(
                "Already followed (nothing changed).",
                ref("schemas", "Message"),
                example={"message": "Interest already registered"},
            ),
            **body_errors,
            404: error("The User Manager has no such user."),
            409: error(
                "A limit is reached: the user's airports (`MAX_INTERESTS_PER_USER`) or the "
                "different airports followed by everyone (`MAX_FOLLOWED_AIRPORTS`); "
                "`details.limit` names it."
            ),
            503: unavailable("The User Manager (or the database) is unavailable"),
        },
    )
    doc.operation(
        "DELETE",
        "/interests",
        summary="Stop following an airport",
        tag="interests",
        body=interest_body,
        responses={
            200: response(
                "No longer followed.",
                ref("schemas", "Message"),
                example={"message": "Interest removed"},
            ),
            **body_errors,
            404: error("The user does not follow this airport."),
            503: unavailable(),
        },
    )
    doc.operation(
        "GET",
        "/interests/{email}",
        summary="List the airports a user follows",
        tag="interests",
        parameters=[email],
        responses={
            200: response(
                "The user's interests by airport code (empty for an unknown user).",
                {"type": "array", "items": interest},
            ),
            400: error("The email in the path is not a valid address."),
            503: unavailable(),
        },
    )
    time_format = "ISO 8601 (UTC when no offset is given, e.g. `2026-01-31T12:00:00Z`) or Unix "
    flight_filters = [
        flight_type,
        query_parameter(
            "since",
            f"Only flights at or after this time: {time_format}seconds.",
            {"type": "string"},
            example="2026-01-30T00:00:00Z",
        ),
        query_parameter(
            "until",
            f"Only flights before this time: {time_format}seconds.",
            {"type": "string"},
            example="1769904000",
        ),
        *page_parameters(default_limit=routes.DEFAULT_PAGE_SIZE, max_limit=routes.MAX_PAGE_SIZE),
    ]
    bad_filters = (
        "an unknown `type`, a time that does not parse, `since` not before `until`, `limit` "
        "out of range or a cursor that did not come from a Link header"
    )
    doc.operation(
        "GET",
        "/flights",
        summary="List the flights at the airports a user follows, newest first",
        tag="flights",
        description="With `email`: the flights at every airport the user follows (the "
        "user is checked in the User Manager over gRPC; no interest: an empty list). "
        "Without: every stored flight, at every airport it has. Each item says which "
        "airport it belongs to and its role there; the same filters and pages as "
        "`/flights/{airport_code}`.",
        parameters=[
            query_parameter(
                "email",
                "The user whose airports to list (any case); leave out for every airport.",
                {"type": "string"},
                example="mario.rossi@example.com",
            ),
            *flight_filters,
        ],
        responses={
            200: response(
                "A page of flights (empty when none is stored).",
                {"type": "array", "items": airport_flight},
                headers=("Link",),
            ),
            400: error(f"An email that is not a valid address, {bad_filters}."),
            404: error("The User Manager has no such user."),
            503: unavailable("The User Manager (or the database) is unavailable"),
        },
    )
    doc.operation(
        "GET",
        "/flights/{airport_code}",
        summary="List an airport's flights, newest first, one page at a time",
        tag="flights",
        parameters=[airport("airport_code"), *flight_filters],
        responses={
            200: response(
                "A page of flights (empty when none is stored).",
                {"type": "array", "items": flight},
                headers=("Link",),
            ),
            400: error(f"{bad_airport}, {bad_filters}."),
            503: unavailable(),
        },
    )
    doc.operation(
        "GET",
        "/flights/last/{icao}",
        summary="The airport's most recent flight (or last arrival, or last departure)",
        tag="flights",
        parameters=[airport("icao"), flight_type],
        responses={
            200: response("The most recent flight.", flight),
            400: error(f"{bad_airport}, or an unknown `type`."),
            404: error("No flight is stored for this airport."),
            503: unavailable(),
        },
    )
    doc.operation(
        "GET",
        "/flights/average/{icao}",
        summary="Average flights per day over the last X days",
        tag="flights",
        parameters=[
            airport("icao"),
            flight_type,
            query_parameter(
                "days",
                f"How many days (24 hours each) back from the last collection: 1 to "
                f"{max_days} (`RETENTION_DAYS`; default {inputs.DEFAULT_AVERAGE_DAYS}).",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": max_days,
                    "default": inputs.DEFAULT_AVERAGE_DAYS,
                },
                example=7,
            ),
        ],
        responses={
            200: response("The average, and the days it covers.", average),
            400: error(f"{bad_airport}, an unknown `type`, or `days` out of range."),
            503: unavailable(),
        },
    )
    doc.operation(
        "POST",
        "/collection/runs",
        summary="Ask the worker for a collection cycle now",
        tag="collection",
        description="The cycle fetches only what is due, so asking often costs no extra "
        "OpenSky credits. `GET /health` shows its outcome.",
        responses={
            202: response(
                "Requested; the worker starts it within `COLLECT_POLL_SECONDS`.",
                ref("schemas", "Message"),
                example={"message": "Collection cycle requested"},
            ),
            429: error(
                "A cycle was asked for or started less than a minute ago; ask again after "
                "`Retry-After` seconds.",
                headers=("Retry-After",),
            ),
            503: unavailable(),
        },
    )
    time_or_null = nullable(DATE_TIME)
    count_or_null = nullable(INTEGER)
    retry = closed_object(
        {
            "endpoint": {"type": "string", "enum": ["all", "arrival", "departure"]},
            "airport": nullable(STRING),
            "begin": DATE_TIME,
            "end": DATE_TIME,
            "attempts": INTEGER,
            "first_failed_at": DATE_TIME,
            "next_attempt_at": DATE_TIME,
            "last_error": STRING,
        },
        description="A range whose fetch failed: OpenSky's endpoint, the airport (null for "
        "a `/flights/all` window), the range, how many times in a row it failed, and when it "
        "is asked for again.",
    )
    add_operations_for_operators(
        doc,
        service="data_collector",
        facts_key="opensky",
        facts_schema=closed_object(
            {
                "credits_remaining": count_or_null,
                "credits_spent_today": INTEGER,
                "over_budget_today": {"type": "boolean"},
                "credits_checked_at": time_or_null,
                "retry_after": time_or_null,
                "sweep_unreliable_since": time_or_null,
                "retries": closed_object(
                    {
                        "waiting": INTEGER,
                        "next_attempt_at": time_or_null,
                        "ranges": {"type": "array", "items": retry},
                    },
                    description="Ranges waiting to be asked for again after a failure "
                    "(`ranges`: the ones due soonest), independently of the periodic cycle.",
                ),
                "interest_reconciliation": closed_object(
                    {
                        "ran_at": time_or_null,
                        "outcome": nullable(STRING),
                        "removed": count_or_null,
                        "unknown_users": count_or_null,
                        "users": count_or_null,
                    },
                    description="The last pass removing the interests of users the User "
                    "Manager does not know (nulls: none yet). `outcome`: `done`; `refused` when "
                    "it did not know more than a tenth of the users who follow airports (and "
                    "more than 3), which removes nothing; `stopped` when it could not answer.",
                ),
                "last_cycle": closed_object(
                    {
                        "started_at": time_or_null,
                        "finished_at": time_or_null,
                        "outcome": nullable(STRING),
                        "mode": nullable(STRING),
                        "requests": count_or_null,
                        "credits_spent": count_or_null,
                        "flights_stored": count_or_null,
                    }
                ),
            },
            description="What the collector knows about OpenSky: the credits left at "
            "its last request, until when it must wait after a 429, since when the "
            "/flights/all sweep is known to miss flights (then it collects per airport), "
            "the ranges waiting for a retry, the last interest reconciliation and the last "
            "cycle.",
        ),
    )
    return doc.spec
