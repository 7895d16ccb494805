"""Data Collector REST API: thin views that validate, call the business logic, shape answers."""

from flask import Blueprint, current_app, jsonify, request

from common.web.auth import require_user, requires
from common.web.errors import ApiError
from common.web.inputs import json_object_body, parse_model, path_email
from common.web.openapi import Message, Reply, documented
from common.web.pagination import PageLink, json_page_response, page_query, parse_page_request
from data_collector import flights, inputs, interests, services
from data_collector.answers import AirportFlight, Average, Flight, Interest

bp = Blueprint("collector", __name__)
TAGS = {
    "interests": "Which airports each user follows.",
    "flights": "Collected flights, last flights, averages.",
    "collection": "The OpenSky collection worker.",
}

# A page of flights is ~0.5 KB per item: 100 by default, never more than 1,000 (as users).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
PAGE_QUERY = page_query(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE)
PEER_UNAVAILABLE = (
    "The User Manager (or the database) is unavailable; retry after `Retry-After` seconds."
)
BAD_AIRPORT = "An airport code that is not the ICAO code of a known airport"
BAD_FILTERS = (
    "an unknown `type`, a time that does not parse, `since` not before `until`, `limit` "
    "out of range or a cursor that did not come from a Link header"
)


@bp.post("/collection/runs")
@requires("collection:run")
@documented(
    tag="collection",
    answers={
        202: Reply(
            "Requested; the worker starts it within `COLLECT_POLL_SECONDS`.",
            Message,
            example={"message": "Collection cycle requested"},
        ),
        429: "A cycle was asked for or started less than a minute ago; ask again after "
        "`Retry-After` seconds.",
    },
)
def request_collection_run():
    """Ask the worker for a collection cycle now.

    The cycle fetches only what is due, so asking often costs no extra OpenSky
    credits. `GET /health` shows its outcome.
    """
    services.request_cycle()
    return {"message": "Collection cycle requested"}, 202


@bp.post("/interests")
@requires("interests:write")
@documented(
    tag="interests",
    body=inputs.NewInterest,
    answers={
        201: Reply(
            "Followed; collection starts shortly.",
            Message,
            example={"message": "Interest added and data fetch initiated"},
        ),
        200: Reply(
            "Already followed, with the same thresholds (nothing changed).",
            Message,
            example={"message": "Interest already registered"},
        ),
        404: "The User Manager has no such user.",
        409: "A limit is reached: the user's airports (`MAX_INTERESTS_PER_USER`) or the "
        "different airports followed by everyone (`MAX_FOLLOWED_AIRPORTS`); `details.limit` "
        "names it. Or the user follows the airport already, with other thresholds "
        "(`details.thresholds`): `PUT /interests` changes them.",
        503: PEER_UNAVAILABLE,
    },
)
def add_interest():
    """Follow an airport for a user who exists in the User Manager, with thresholds if wanted.

    The user is checked in the User Manager over gRPC. A new interest starts a
    collection cycle for the airport soon after. `high_value` and `low_value`
    (either or both; with both, `high_value > low_value`) ask for an email when the
    airport's flights over its alert window go above or under them.
    """
    data = inputs.new_interest(json_object_body())
    require_user(data.email)
    services.require_existing_user(directory=services.user_manager(), email=data.email)
    added = interests.add_interest(
        email=data.email,
        airport_code=data.airport_code,
        high_value=data.high_value,
        low_value=data.low_value,
    )
    if added:
        return {"message": "Interest added and data fetch initiated"}, 201
    return {"message": "Interest already registered"}, 200


@bp.put("/interests")
@requires("interests:write")
@documented(
    tag="interests",
    body=inputs.ThresholdsChange,
    answers={
        200: Reply("The interest with its new thresholds.", Interest),
        400: "A threshold that is not an integer >= 0, neither threshold given, or thresholds "
        "that would leave `high_value` not above `low_value` (both are named).",
        404: "The user does not follow this airport.",
    },
)
def change_thresholds():
    """Set or clear an interest's thresholds.

    A threshold given replaces the stored one, `null` clears it, one left out keeps its
    value. A change is evaluated at once against the airport's figure over its alert
    window (when it has one): moving a threshold across it is a crossing, one email.
    """
    data = inputs.thresholds_change(json_object_body())
    require_user(data.email)
    interest = interests.change_thresholds(
        email=data.email, airport_code=data.airport_code, changes=data.changes()
    )
    windows = interests.alert_windows([interest.airport_code])
    return interest.to_dict(
        waits_for_credits_until=interests.credit_waits().get(interest.airport_code),
        window=windows.get(interest.airport_code),
    )


@bp.delete("/interests")
@requires("interests:write")
@documented(
    tag="interests",
    body=inputs.InterestRequest,
    answers={
        200: Reply("No longer followed.", Message, example={"message": "Interest removed"}),
        404: "The user does not follow this airport.",
    },
)
def remove_interest():
    """Stop following an airport (and get no more alert emails for it)."""
    data = parse_model(inputs.InterestRequest, json_object_body())
    require_user(data.email)
    if not interests.remove_interest(email=data.email, airport_code=data.airport_code):
        raise ApiError(404, "Interest not found")
    return {"message": "Interest removed"}


@bp.get("/interests/<path:email>")
@requires("interests:read")
@documented(
    tag="interests",
    path=inputs.EmailPath,
    answers={
        200: Reply(
            "The user's interests by airport code (empty for an unknown user).", list[Interest]
        ),
        400: "The email in the path is not a valid address.",
    },
)
def list_interests(email: str):
    """List the airports a user follows: thresholds, alert window and state, credit waits.

    `alert_window.flights` is the figure compared with `high_value` and `low_value`: the
    airport's arrivals and departures over its most recent whole UTC day that is fully
    collected. `alert_state` is what the Alert System last reported.
    """
    email = path_email(email)
    require_user(email)
    followed = interests.list_interests(email=email)
    waits = interests.credit_waits()
    windows = interests.alert_windows([interest.airport_code for interest in followed])
    return jsonify(
        [
            interest.to_dict(
                waits_for_credits_until=waits.get(interest.airport_code),
                window=windows.get(interest.airport_code),
            )
            for interest in followed
        ]
    )


@bp.get("/flights")
@requires("flights:read")
@documented(
    tag="flights",
    query=(inputs.UserQuery, inputs.FlightFilters, PAGE_QUERY),
    answers={
        200: Reply(
            "A page of flights (empty when none is stored).",
            list[AirportFlight],
            headers=(PageLink,),
        ),
        400: f"An email that is not a valid address, {BAD_FILTERS}.",
        404: "The User Manager has no such user.",
        503: PEER_UNAVAILABLE,
    },
)
def list_airport_flights():
    """List the flights at the airports a user follows (or at every airport), newest first.

    With `email`: the flights at every airport the user follows (the user is checked in
    the User Manager over gRPC; no interest: an empty list). Without: every stored flight,
    at every airport it has. Each item says which airport it belongs to and its role there;
    the same filters and pages as `/flights/{airport_code}`.
    """
    raw_email = request.args.get("email")
    directions = inputs.flight_types(request.args.get("type"))
    since, until = inputs.time_range(request.args.get("since"), request.args.get("until"))
    page = parse_page_request(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE, arity=4)
    after = flights.AirportFlightCursor.from_key(page.after) if page.after else None
    email = None if raw_email is None else path_email(raw_email, where="the query string")

    def read() -> list:
        return flights.list_airport_flights(
            email=email,
            directions=directions,
            since=since,
            until=until,
            after=after,
            limit=page.limit + 1,
        )

    if email is None:
        rows = read()
    else:
        require_user(email)
        rows = services.read_for_existing_user(
            directory=services.user_manager(), email=email, read=read
        )
    return json_page_response(rows, page=page, sort_key_of=flights.AirportFlightCursor.key_of)


@bp.get("/flights/<airport_code>")
@requires("flights:read")
@documented(
    tag="flights",
    path=inputs.AirportCodePath,
    query=(inputs.FlightFilters, PAGE_QUERY),
    answers={
        200: Reply(
            "A page of flights (empty when none is stored).", list[Flight], headers=(PageLink,)
        ),
        400: f"{BAD_AIRPORT}, {BAD_FILTERS}.",
    },
)
def list_flights(airport_code: str):
    """List an airport's arrivals and/or departures, newest first, one page at a time."""
    airport = inputs.path_airport_code(airport_code)
    directions = inputs.flight_types(request.args.get("type"))
    since, until = inputs.time_range(request.args.get("since"), request.args.get("until"))
    page = parse_page_request(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE, arity=3)
    after = flights.FlightCursor.from_key(page.after) if page.after else None
    rows = flights.list_flights(
        airport=airport,
        directions=directions,
        since=since,
        until=until,
        after=after,
        limit=page.limit + 1,
    )
    return json_page_response(rows, page=page, sort_key_of=flights.FlightCursor.key_of)


@bp.get("/flights/last/<icao>")
@requires("flights:read")
@documented(
    tag="flights",
    path=inputs.IcaoPath,
    query=(inputs.TypeQuery,),
    answers={
        200: Reply("The most recent flight.", Flight),
        400: f"{BAD_AIRPORT}, or an unknown `type`.",
        404: "No flight is stored for this airport.",
    },
)
def last_flight(icao: str):
    """Return the airport's most recent flight (or last arrival / last departure)."""
    airport = inputs.path_airport_code(icao)
    directions = inputs.flight_types(request.args.get("type"))
    rows = flights.list_flights(airport=airport, directions=directions, limit=1)
    if not rows:
        raise ApiError(404, f"No flight stored for {airport}.")
    return current_app.response_class(rows[0].item + "\n", mimetype="application/json")


@bp.get("/flights/average/<icao>")
@requires("flights:read")
@documented(
    tag="flights",
    path=inputs.IcaoPath,
    query=(inputs.TypeQuery, inputs.days_query),
    answers={
        200: Reply("The average, and the days it covers.", Average),
        400: f"{BAD_AIRPORT}, an unknown `type`, or `days` out of range.",
    },
)
def average_flights(icao: str):
    """Return the average flights per day over the last X days (their collected part)."""
    airport = inputs.path_airport_code(icao)
    directions = inputs.flight_types(request.args.get("type"))
    days = inputs.average_days(request.args.get("days"))
    return flights.average_flights(airport=airport, days=days, directions=directions)
