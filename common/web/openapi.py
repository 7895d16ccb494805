"""OpenAPI 3.1 documents for both REST APIs, built in Python from the code they describe.

Each service's ``openapi.py`` lists its operations with the building blocks
here. Request bodies are the JSON schemas of the pydantic models the routes
validate with, and limits (page sizes, body sizes, the average's window)
come from the same constants and configuration the routes use, so the
document cannot disagree with the code on them. A unit test checks that the
document's operations are exactly the app's routes, and the integration
suite fuzzes every operation with schemathesis against the running services.

:func:`install_api_docs` serves the document at ``GET /openapi.json`` and an
interactive Swagger UI at ``GET /docs/``. The UI's assets come from the
flask-swagger-ui wheel, never from a CDN, so the page works offline.
"""

import re
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel

from common.observability.request_ids import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from common.web.auth import PUBLIC_PATHS
from common.web.health import HEALTH_STATUSES, PEER_STATUSES

OPENAPI_VERSION = "3.1.0"
DOCUMENT_PATH = "/openapi.json"
DOCS_PATH = "/docs"

REF = "#/components/{kind}/{name}"
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
DATE_TIME = {"type": "string", "format": "date-time"}


def ref(kind: str, name: str) -> dict[str, str]:
    """Return a ``$ref`` to a component."""
    return {"$ref": REF.format(kind=kind, name=name)}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` that also allows ``null``."""
    return {**schema, "type": [schema["type"], "null"]}


def closed_object(
    properties: dict[str, Any], *, optional: tuple[str, ...] = (), **keywords: Any
) -> dict[str, Any]:
    """Return an object schema with exactly ``properties``, all required but ``optional``.

    Closed (no other properties), so a field the code adds without documenting
    it fails the schemathesis run instead of drifting silently.
    """
    return {
        "type": "object",
        **keywords,
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error has this shape (the seed's): a sentence, and details "
    "naming each offending field when the client can act on them.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "examples": ["Invalid request: check email."]},
        "details": {
            "type": "object",
            "description": "Field (or parameter) name to what is wrong with it.",
            "additionalProperties": {"type": "string"},
        },
    },
}
MESSAGE_SCHEMA = closed_object({"message": STRING})

HEADERS = {
    REQUEST_ID_HEADER: {
        "description": "The request's id: the client's own `X-Request-ID` when it is 1-128 "
        "characters of `A-Z a-z 0-9 . _ : -`, else a fresh one. Every log line the request "
        "causes, in both services, carries it.",
        "required": True,
        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN.pattern},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Link": {
        "description": 'RFC 8288: `<url>; rel="next"` for the next page; absent on the last page.',
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {
        "description": "The credentials this service accepts (RFC 9110): a bearer token or "
        "an API key in `X-API-Key`.",
        "required": True,
        "schema": {"type": "string"},
    },
}
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key issued by the operator (stored only as its SHA-256).",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An OAuth2/OIDC access token of the configured issuer and audience; "
        "scopes in its `scope` claim.",
    },
}
SECURITY_NOTE = """

**Who may call what.** With `AUTH_MODE=on`, every operation but `GET /ping` needs an API key
(`X-API-Key`) or a bearer JWT, and the scope each operation names; a credential bound to a
user (a key's email, a token's email claim) acts only for that user unless it holds `admin`.
No or a bad credential is a 401, a missing scope or another user a 403. With `AUTH_MODE=off`
(the default) nothing is checked."""


def json_body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """Return a ``content`` object with one ``application/json`` media type."""
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def response(
    description: str,
    schema: dict[str, Any] | None = None,
    *,
    headers: tuple[str, ...] = (),
    example: Any = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """Return a response object; every response also carries ``X-Request-ID``."""
    answer: dict[str, Any] = {
        "description": description,
        "headers": {name: ref("headers", name) for name in (REQUEST_ID_HEADER, *headers)},
    }
    if schema is not None:
        answer["content"] = (
            json_body(schema, example)
            if content_type == "application/json"
            else {content_type: {"schema": schema}}
        )
    return answer


def error(description: str, *, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return an error response (the one error shape); a 503 also says when to retry."""
    return response(description, ref("schemas", "Error"), headers=headers)


def unavailable(what: str = "The database is unavailable") -> dict[str, Any]:
    """Return the 503 every operation that needs a backing service can answer."""
    return error(f"{what}; retry after `Retry-After` seconds.", headers=("Retry-After",))


def path_parameter(name: str, description: str, schema: dict[str, Any], example: str):
    """Return a required path parameter."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
        "example": example,
    }


def query_parameter(name: str, description: str, schema: dict[str, Any], example: Any = None):
    """Return an optional query parameter."""
    parameter = {"name": name, "in": "query", "description": description, "schema": schema}
    if example is not None:
        parameter["example"] = example
    return parameter


def page_parameters(*, default_limit: int, max_limit: int) -> list[dict[str, Any]]:
    """Return ``limit`` and ``cursor``, the parameters of every keyset-paginated list."""
    return [
        query_parameter(
            "limit",
            f"Items per page, 1 to {max_limit} (default {default_limit}).",
            {"type": "integer", "minimum": 1, "maximum": max_limit, "default": default_limit},
            example=min(50, max_limit),
        ),
        query_parameter(
            "cursor",
            "Opaque position of the page: take it from the previous page's `Link` header, "
            "never build it.",
            {"type": "string"},
        ),
    ]


class Document:
    """An OpenAPI document under construction: components and operations."""

    def __init__(self, *, title: str, description: str, tags: list[dict[str, str]]):
        self.spec: dict[str, Any] = {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": title,
                "version": "1.0.0",
                "description": description + SECURITY_NOTE,
            },
            "tags": tags,
            "paths": {},
            "components": {
                "schemas": {"Error": ERROR_SCHEMA, "Message": MESSAGE_SCHEMA},
                "headers": dict(HEADERS),
                "parameters": {},
                "securitySchemes": SECURITY_SCHEMES,
            },
        }

    def schema(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        """Register a named schema; return a reference to it."""
        self.spec["components"]["schemas"][name] = schema
        return ref("schemas", name)

    def model(self, model: type[BaseModel], **property_notes: dict[str, Any]) -> dict[str, str]:
        """Register the JSON schema of the pydantic model a route validates with.

        ``property_notes`` adds documentation (descriptions, examples) to
        named properties; validation keywords always come from the model.
        """
        schema = model.model_json_schema(ref_template=REF.format(kind="schemas", name="{model}"))
        for name, nested in schema.pop("$defs", {}).items():
            self.schema(name, nested)
        for name, notes in property_notes.items():
            schema["properties"][name].update(notes)
        return self.schema(model.__name__, schema)

    def header(self, name: str, header: dict[str, Any]) -> None:
        """Register a response header other operations can name."""
        self.spec["components"]["headers"][name] = header

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        responses: dict[int, dict[str, Any]],
        description: str | None = None,
        parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Add one operation; every operation also accepts an optional ``X-Request-ID``."""
        operation: dict[str, Any] = {
            "summary": summary,
            "operationId": f"{method.lower()}{_camel(path)}",
            "tags": [tag],
        }
        if description:
            operation["description"] = description
        operation["parameters"] = [*(parameters or []), _REQUEST_ID_PARAMETER]
        if body is not None:
            operation["requestBody"] = {"required": True, "content": body}
        operation["responses"] = {str(status): answer for status, answer in responses.items()}
        operation["responses"]["414"] = _URI_TOO_LONG
        self.spec["paths"].setdefault(path, {})[method.lower()] = operation


# Gunicorn's default limit_request_line: it refuses longer request lines itself.
MAX_REQUEST_LINE_BYTES = 4094
_URI_TOO_LONG = {
    "description": f"The request line (method, path and query string) is longer than "
    f"{MAX_REQUEST_LINE_BYTES} bytes. Answered by the web server (gunicorn) before the API "
    "sees the request, so as HTML and without `X-Request-ID`.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
_REQUEST_ID_PARAMETER = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": "Your id for this request (1-128 characters of `A-Z a-z 0-9 . _ : -`), "
    "to find its log lines in both services; anything else is replaced by a fresh id.",
    "schema": {"type": "string"},
}


def _camel(path: str) -> str:
    words = [part.strip("{}") for part in path.replace(".", "/").split("/") if part]
    return "".join(word[:1].upper() + word[1:] for word in words)


def add_operations_for_operators(
    document: Document, *, service: str, facts_key: str, facts_schema: dict[str, Any]
) -> None:
    """Add what both services answer alike: liveness, readiness, metrics and this document."""
    document.operation(
        "GET",
        "/ping",
        summary="Liveness: the web server answers",
        tag="operations",
        description="Touches nothing behind the web server; use `/health` for readiness.",
        responses={200: response("Alive.", ref("schemas", "Message"), example={"message": "pong"})},
    )
    health = document.schema(
        "Health",
        closed_object(
            {
                "status": {"type": "string", "enum": list(HEALTH_STATUSES)},
                "service": {"type": "string", "const": service},
                "database": {"type": "string", "enum": ["ok", "unavailable"]},
                "peer": closed_object(
                    {
                        "service": STRING,
                        "address": STRING,
                        "status": {"type": "string", "enum": list(PEER_STATUSES)},
                    },
                    description="The other service's gRPC health service, asked with a "
                    "short deadline.",
                ),
                facts_key: {"anyOf": [facts_schema, {"type": "null"}]},
                "api_keys": {
                    "anyOf": [
                        closed_object(
                            {
                                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                                "keys": {"type": "integer", "minimum": 0},
                                "error": STRING,
                            },
                            optional=("keys", "error"),
                        ),
                        {"type": "null"},
                    ],
                    "description": "The state of `API_KEYS_FILE` (null without one). "
                    "`unavailable`: it cannot be read, so no API key is accepted.",
                },
                "error": STRING,
            },
            optional=("service", "database", "peer", facts_key, "api_keys", "error"),
            description="Readiness of the service. `status` is `ok` when the database and "
            "the peer answer, `degraded` when only the peer does not or the API keys file "
            "cannot be read (the service still serves, and says so), `unavailable` when the "
            "database does not. The rest is shown to callers with the `ops` scope only (and "
            "to everyone with auth off).",
        ),
    )
    document.operation(
        "GET",
        "/health",
        summary="Readiness: database, peer service and the service's own facts",
        tag="operations",
        responses={
            200: response("Ready (`ok` or `degraded`).", health),
            503: response(
                "Not ready: the database does not answer.", health, headers=("Retry-After",)
            ),
        },
    )
    document.operation(
        "GET",
        "/metrics",
        summary="Prometheus metrics of every process of the service",
        tag="operations",
        responses={
            200: response(
                "Prometheus text exposition format.", {"type": "string"}, content_type="text/plain"
            )
        },
    )
    document.operation(
        "GET",
        DOCUMENT_PATH,
        summary="This OpenAPI document",
        tag="operations",
        description=f"An interactive version is at `{DOCS_PATH}/`.",
        responses={200: response("The OpenAPI 3.1 document.", {"type": "object"})},
    )


def add_security(spec: dict[str, Any], app: Flask) -> None:
    """Document each operation's credential and scope, read from its view (``@requires``).

    Only with ``AUTH_MODE=on``: the document describes the service as it runs.

    The scope comes from the code itself, so the document cannot disagree
    with what the service checks. ``/ping`` is public; the rest answer 401
    without a valid credential and 403 without the scope (or for another
    user than the credential's own).
    """
    scopes = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        view = app.view_functions[rule.endpoint]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            scopes[(path, method.lower())] = getattr(view, "required_scope", None)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC_PATHS:
                operation["security"] = []
                continue
            scope = scopes.get((path, method))
            operation["security"] = [{"apiKey": []}, {"bearerAuth": [scope] if scope else []}]
            if scope:
                operation["description"] = (
                    operation.get("description", "") + f"\n\nNeeds the scope `{scope}`."
                ).strip()
            answers = operation["responses"]
            answers["401"] = error(
                "No credential, or one that is not valid.", headers=("WWW-Authenticate",)
            )
            answers["403"] = error("The credential lacks the scope, or is bound to another user.")


def install_api_docs(app: Flask, build: Callable[[Flask], dict[str, Any]]) -> None:
    """Serve the document built by ``build(app)`` and the Swagger UI page that shows it."""
    document = build(app)
    if app.config["AUTH_MODE"] == "on":
        add_security(document, app)

    @app.get(DOCUMENT_PATH)
    def openapi_document():
        """Return the OpenAPI document of this service."""
        return jsonify(document)

    app.register_blueprint(
        get_swaggerui_blueprint(
            DOCS_PATH,
            DOCUMENT_PATH,
            # validatorUrl None: no call to swagger.io's online validator (works offline).
            config={"app_name": document["info"]["title"], "validatorUrl": None},
        )
    )
