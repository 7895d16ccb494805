"""Data Collector REST API: thin views that validate, call services, and shape answers."""

from flask import Blueprint, current_app, jsonify

from common.errors import ApiError, json_object_body
from common.validation import normalize_email, parse_model
from data_collector import services

bp = Blueprint("collector", __name__)


@bp.get("/ping")
def ping():
    """Answer liveness probes."""
    return {"message": "pong"}


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
