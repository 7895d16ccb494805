"""One JSON error shape for every service, produced by central handlers.

Every error leaves as ``{"error": "<sentence>"}``, with a ``details`` object
where the client can act on specifics (which fields are invalid). Routes
raise :class:`ApiError` or let werkzeug's HTTP exceptions propagate; nothing
assembles error JSON by hand, and no stack trace or 5xx from a bug in input
handling reaches the client.
"""

import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from common.observability.logs import describe_database_error
from common.web.paths import loggable_path

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: HTTP status, a sentence for humans, optional details and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(status: int, message: str, details=None, headers=None):
    """Build the JSON error response used by every handler."""
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn every failure into the JSON error shape."""

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        return error_response(error.status, error.message, error.details, error.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        headers = {}
        if error.code == 405 and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return error_response(error.code or 500, error.description or error.name, None, headers)

    @app.after_request
    def redirect_to_a_path(response: Response) -> Response:
        """Point a redirect (``/docs`` to ``/docs/``) at a path, never at the client's ``Host``.

        Werkzeug builds the URL of a missing trailing slash's redirect from the
        ``Host`` header, which is whatever the client sent; a path is enough.
        """
        if not 300 <= response.status_code < 400:
            return response  # every answer passes here: parse nothing for the others
        location = urlsplit(response.headers.get("Location", ""))
        if location.netloc:
            path = urlunsplit(("", "", location.path, location.query, location.fragment))
            response.headers["Location"] = path
            response.set_data(json.dumps({"message": f"Moved to {path}"}))
            response.mimetype = "application/json"
        return response

    @app.errorhandler(OperationalError)
    def handle_database_unavailable(error: OperationalError):
        log.error(
            "database unavailable during %s %s: %s",
            request.method,
            loggable_path(),
            describe_database_error(error),
        )
        return error_response(
            503, "The database is unavailable; try again shortly.", None, {"Retry-After": "5"}
        )

    @app.errorhandler(DBAPIError)
    def handle_database_error(error: DBAPIError):
        log.exception("database error during %s %s", request.method, loggable_path())
        return error_response(500, "Internal server error.")

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error during %s %s", request.method, loggable_path())
        return error_response(500, "Internal server error.")
