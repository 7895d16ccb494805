"""Data Collector REST API: thin views that validate, call the business logic, shape answers."""

from flask import Blueprint, current_app, jsonify, request

from common.web.auth import require_user, requires
from common.web.errors import ApiError
from common.web.health import add_probes
from common.web.inputs import json_object_body, parse_model, path_email
from common.web.pagination import json_page_response, parse_page_request
from data_collector import flights, inputs, interests, services
from data_collector.models import db

bp = Blueprint("collector", __name__)

# A page of flights is ~0.5 KB per item: 100 by default, never more than 1,000 (as users).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

add_probes(
    bp,
    service="data_collector",
    db=db,
    peer=services.user_manager,
    peer_service="user_manager",
    facts_key="opensky",
    facts=services.opensky_facts,
)


@bp.post("/collection/runs")
@requires("collection:run")
def request_collection_run():
    """Ask the worker for a collection cycle now (it fetches only what is due)."""
    services.request_cycle()
    return {"message": "Collection cycle requested"}, 202


@bp.post("/interests")
@requires("interests:write")
def add_interest():
    """Follow an airport for a user who exists in the User Manager."""
    data = parse_model(inputs.InterestRequest, json_object_body())
    require_user(data.email)
    services.require_existing_user(directory=services.user_manager(), email=data.email)
    if interests.add_interest(email=data.email, airport_code=data.airport_code):
        return {"message": "Interest added and data fetch initiated"}, 201
    return {"message": "Interest already registered"}, 200


@bp.delete("/interests")
@requires("interests:write")
def remove_interest():
    """Stop following an airport."""
    data = parse_model(inputs.InterestRequest, json_object_body())
    require_user(data.email)
    if not interests.remove_interest(email=data.email, airport_code=data.airport_code):
        raise ApiError(404, "Interest not found")
    return {"message": "Interest removed"}


@bp.get("/interests/<path:email>")
@requires("interests:read")
def list_interests(email: str):
    """List the airports a user follows, and whether collection of each waits for credits."""
    email = path_email(email)
    require_user(email)
    followed = interests.list_interests(email=email)
    waits = interests.credit_waits()
    return jsonify(
        [
            interest.to_dict(waits_for_credits_until=waits.get(interest.airport_code))
            for interest in followed
        ]
    )


@bp.get("/flights")
@requires("flights:read")
def list_airport_flights():
    """List the flights at the airports a user follows (or at every airport), newest first."""
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
def average_flights(icao: str):
    """Return the average flights per day over the last X days (their collected part)."""
    airport = inputs.path_airport_code(icao)
    directions = inputs.flight_types(request.args.get("type"))
    days = inputs.average_days(request.args.get("days"))
    return flights.average_flights(airport=airport, days=days, directions=directions)
