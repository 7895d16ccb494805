"""Data Collector REST API: thin views that validate, call services, and shape answers."""

from flask import Blueprint, current_app, jsonify, request

from common.errors import ApiError, json_object_body
from common.health import readiness
from common.pagination import json_page_response, parse_page_request
from common.validation import normalize_email, parse_model, whole_number
from data_collector import services
from data_collector.models import db

bp = Blueprint("collector", __name__)

# A page of flights is ~0.5 KB per item: 100 by default, never more than 1,000 (as users).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The average looks back a week unless asked otherwise (the assignment's "last X days").
DEFAULT_AVERAGE_DAYS = 7


@bp.get("/ping")
def ping():
    """Answer liveness probes."""
    return {"message": "pong"}


@bp.get("/health")
def health():
    """Report readiness: the database, the User Manager, OpenSky credits and the last cycle."""
    return readiness(
        service="data_collector",
        db=db,
        peer=current_app.extensions["user_manager_peer"],
        peer_service="user_manager",
        facts_key="opensky",
        facts=services.opensky_facts,
    )


@bp.post("/collection/runs")
def request_collection_run():
    """Ask the worker for a collection cycle now (it fetches only what is due)."""
    services.request_cycle()
    return {"message": "Collection cycle requested"}, 202


@bp.post("/interests")
def add_interest():
    """Follow an airport for a user who exists in the User Manager."""
    data = parse_model(services.InterestRequest, json_object_body())
    services.require_existing_user(
        peer=current_app.extensions["user_manager_peer"], email=data.email
    )
    created = services.add_interest(email=data.email, airport_code=data.airport_code)
    if created:
        return {"message": "Interest added and data fetch initiated"}, 201
    return {"message": "Interest already registered"}, 200


@bp.delete("/interests")
def remove_interest():
    """Stop following an airport."""
    data = parse_model(services.InterestRequest, json_object_body())
    if not services.remove_interest(email=data.email, airport_code=data.airport_code):
        raise ApiError(404, "Interest not found")
    return {"message": "Interest removed"}


@bp.get("/interests/<path:email>")
def list_interests(email: str):
    """List the airports a user follows."""
    try:
        normalized = normalize_email(email)
    except ValueError as error:
        raise ApiError(400, f"'{email}' is not a valid email address: {error}") from None
    return jsonify([interest.to_dict() for interest in services.list_interests(email=normalized)])


@bp.get("/flights/<airport_code>")
def list_flights(airport_code: str):
    """List an airport's arrivals and/or departures, newest first, one page at a time."""
    airport = services.path_airport_code(airport_code)
    directions = services.flight_types(request.args.get("type"))
    since = services.parse_instant("since", request.args.get("since"))
    until = services.parse_instant("until", request.args.get("until"))
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "since must be before until.")
    page = parse_page_request(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE, arity=3)
    after = services.FlightCursor.from_key(page.after) if page.after else None
    items = services.list_flights(
        airport=airport,
        directions=directions,
        since=since,
        until=until,
        after=after,
        limit=page.limit + 1,
    )
    return json_page_response(
        items,
        page=page,
        sort_key_of=services.FlightCursor.key_of,
    )


@bp.get("/flights/last/<icao>")
def last_flight(icao: str):
    """Return the airport's most recent flight (or last arrival / last departure)."""
    airport = services.path_airport_code(icao)
    directions = services.flight_types(request.args.get("type"))
    items = services.list_flights(airport=airport, directions=directions, limit=1)
    if not items:
        raise ApiError(404, f"No flight stored for {airport}.")
    return current_app.response_class(items[0].item + "\n", mimetype="application/json")


@bp.get("/flights/average/<icao>")
def average_flights(icao: str):
    """Return the average flights per day over the last X whole days that were collected."""
    airport = services.path_airport_code(icao)
    directions = services.flight_types(request.args.get("type"))
    raw = request.args.get("days")
    days = DEFAULT_AVERAGE_DAYS
    if raw is not None:
        days = whole_number("days", raw, minimum=1, maximum=current_app.config["RETENTION_DAYS"])
    return services.average_flights(airport=airport, days=days, directions=directions)
