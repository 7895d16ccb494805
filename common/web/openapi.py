"""OpenAPI 3.1 documents generated from the views: their models, decorators and docstrings.

A view declares with :func:`documented` the pydantic models of what it takes
(the body model it validates with; path, query and header models) and its
answers by status (:class:`Reply`, or a sentence for an error); its docstring
is the summary and description. The decorator only records: no request
passes through it. At start, :func:`install_api_docs` has apispec assemble
the document from every route, adding what all operations share (the request
id, 414, a body's 400/413/415, ``Retry-After`` on 429 and 503, the database's
503 on every operation of the service's own API, and with
``AUTH_MODE=on`` each ``@requires`` scope with its 401 and 403), and serves
it at ``/openapi.json`` with the Swagger UI at ``/docs/`` (assets from the
flask-swagger-ui wheel, never a CDN: it works offline).

What the document says of the whole service is written where a reader of
the code looks first: the service package's docstring (``Name: summary.``
titles the document "Name API", the rest is its overview), and ``TAGS``
beside the blueprint in ``routes.py``.
"""

import inspect
import re
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from apispec import APISpec
from flask import Flask, jsonify
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from common.observability.request_ids import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from common.web.auth import PUBLIC_PATHS

DOCUMENT_PATH = "/openapi.json"
DOCS_PATH = "/docs"
# Gunicorn's default limit_request_line: it refuses longer request lines itself.
MAX_REQUEST_LINE_BYTES = 4094
# What holds for every service's API, after its own overview.
COMMON_NOTE = """

**Errors** are JSON, `{"error": "...", "details": {...}}`. **Lists** are JSON arrays; the
next page's URL is in the `Link: <...>; rel="next"` header. Every response carries
`X-Request-ID`.

**Who may call what.** With `AUTH_MODE=on`, every operation but `GET /ping` needs an API key
(`X-API-Key`) or a bearer JWT, and the scope each operation names; a credential bound to a
user (a key's email, a token's email claim) acts only for that user unless it holds `admin`.
No or a bad credential is a 401, a missing scope or another user a 403 (a bearer token that
names no verified email acts for no user). With `AUTH_MODE=off` (the default) nothing is
checked."""
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
URI_TOO_LONG = {
    "description": f"The request line (method, path and query string) is longer than "
    f"{MAX_REQUEST_LINE_BYTES} bytes. Answered by the web server (gunicorn) before the API "
    "sees the request, so as HTML and without `X-Request-ID`.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
# Every view of a service's own API uses its database, and the app-wide handler answers
# 503 when the database is unavailable; a view may say more of its 503.
UNAVAILABLE = "The database is unavailable; retry after `Retry-After` seconds."
OPERATIONS_TAG = "operations"
BODY_ERRORS = {
    400: "A body that is not a JSON object, or invalid fields (`details` names each).",
    413: "The body is larger than {MAX_CONTENT_LENGTH} bytes.",
    415: "The body is not declared as JSON (`Content-Type: application/json`).",
}


class Answer(BaseModel):
    """Base of the answers' models: closed, so an undocumented field fails the fuzzing."""

    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    """Every error has this shape: a sentence, and details naming each field to fix."""

    error: str = Field(examples=["Invalid request: check email."])
    details: dict[str, str] = Field(
        None, description="Field (or parameter) name to what is wrong with it."
    )


class Message(Answer):
    """What was done, in a sentence."""

    message: str


class RequestIdParameter(BaseModel):
    """The request id a client may choose."""

    request_id: str = Field(
        None,
        alias=REQUEST_ID_HEADER,
        description="Your id for this request (1-128 characters of `A-Z a-z 0-9 . _ : -`), to "
        "find its log lines in both services; anything else is replaced by a fresh id.",
    )


class RequestIdHeader(BaseModel):
    """The header every answer carries."""

    request_id: str = Field(
        alias=REQUEST_ID_HEADER,
        pattern=REQUEST_ID_PATTERN.pattern,
        description="The request's id: the client's own `X-Request-ID` when it is 1-128 "
        "characters of `A-Z a-z 0-9 . _ : -`, else a fresh one. Every log line the request "
        "causes, in both services, carries it.",
    )


class RetryAfterHeader(BaseModel):
    """The header of every 429 and 503."""

    retry_after: str = Field(
        alias="Retry-After", pattern="^[0-9]+$", description="Seconds to wait before retrying."
    )


class ChallengeHeader(BaseModel):
    """The header of a 401."""

    challenge: str = Field(
        alias="WWW-Authenticate",
        description="The credentials this service accepts (RFC 9110): a bearer token or an "
        "API key in `X-API-Key`.",
    )


@dataclass(frozen=True)
class Reply:
    """One answer: what it means, its body (a model, ``list[Model]``, a JSON schema or None)."""

    description: str
    body: Any = Error
    headers: tuple[type[BaseModel], ...] = ()
    example: Any = None
    media_type: str = "application/json"


AUTH_ERRORS = {
    401: Reply("No credential, or one that is not valid.", headers=(ChallengeHeader,)),
    403: "The credential lacks the scope, is bound to another user, or names no verified email "
    "where the operation acts for a user.",
    503: "Credentials cannot be checked right now (the API keys file cannot be read, or the "
    "identity provider's keys cannot be fetched); retry after `Retry-After` seconds.",
}


@dataclass(frozen=True)
class Operation:
    """What :func:`documented` records; ``query`` models may be functions of the app's config."""

    tag: str
    answers: dict[int, Reply | str]
    body: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    query: tuple[Any, ...] = ()
    headers: type[BaseModel] | None = None


def documented(**operation: Any):
    """Record on a view what the document says of it (see :class:`Operation`); return the view."""
    recorded = Operation(**operation)

    def record(view):
        view.openapi_operation = recorded
        return view

    return record


class DocumentSchema(GenerateJsonSchema):
    """Pydantic's JSON schemas, less each field's title; answers show no defaults."""

    def field_title_should_be_set(self, schema) -> bool:
        """Leave titles out: pydantic's are the field names again."""
        return False

    def default_schema(self, schema):
        """Show defaults of what clients send; an answer's absent field has none."""
        if self.mode == "serialization":
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    """Return the fields of ``model`` as parameters in ``where``, description and example lifted."""
    schema = model.model_json_schema(schema_generator=DocumentSchema)
    found = []
    for name, field in schema["properties"].items():
        if "default" in field and field["default"] is None:
            del field["default"]  # an optional parameter, not one that defaults to null
        parameter = {"name": name, "in": where, "required": name in schema.get("required", ())}
        if "description" in field:
            parameter["description"] = field.pop("description")
        if "examples" in field:
            parameter["example"] = field.pop("examples")[0]
        found.append({**parameter, "schema": field})
    return found


def install_api_docs(app: Flask, overview: str, tags: dict[str, str]) -> None:
    """Serve the document of ``app``'s routes at ``/openapi.json``, and the page showing it.

    ``overview`` is the service package's docstring; ``tags`` describe the
    tags its views name.
    """

    @app.get(DOCUMENT_PATH)
    @documented(
        tag=OPERATIONS_TAG, answers={200: Reply("The OpenAPI 3.1 document.", {"type": "object"})}
    )
    def openapi_document():
        """Return this OpenAPI document.

        An interactive version is at `/docs/`.
        """
        return jsonify(document)

    document = build_document(app, overview, tags)
    app.register_blueprint(
        get_swaggerui_blueprint(
            DOCS_PATH,
            DOCUMENT_PATH,
            # validatorUrl None: no call to swagger.io's online validator (works offline).
            config={"app_name": document["info"]["title"], "validatorUrl": None},
        )
    )


def build_document(app: Flask, overview: str, tags: dict[str, str]) -> dict[str, Any]:
    """Return the OpenAPI document of every route of ``app``, each documented by its view."""
    heading, _, description = inspect.cleandoc(overview or "").partition("\n\n")
    name, _, summary = heading.replace("\n", " ").partition(": ")
    if not (name and summary and description):
        raise TypeError(
            "the service package's docstring opens its API document: write "
            "'Name: summary.', a blank line, then the overview"
        )
    info = {"summary": summary[:1].upper() + summary[1:], "description": description + COMMON_NOTE}
    spec = APISpec(f"{name} API", "1.0.0", "3.1.0", info=info)
    tags = {**tags, OPERATIONS_TAG: "Probes, metrics and this document."}
    for tag, meaning in tags.items():
        spec.tag({"name": tag, "description": meaning})
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, "openapi_operation"):
            raise TypeError(f"{rule.rule} is not documented: decorate its view with @documented")
        if view.openapi_operation.tag not in tags:
            raise TypeError(f"{rule.rule}: say what {view.openapi_operation.tag!r} means in TAGS")
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes += [(path, method, view) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    # Every model at once, so pydantic names each schema once for the whole document.
    models = [(Error, "serialization")]
    for _, _, view in routes:
        models.append((view.openapi_operation.body, "validation"))
        answers = view.openapi_operation.answers.values()
        models += [(_model_in(_reply(answer).body), "serialization") for answer in answers]
    refs, components = models_json_schema(
        [model for model in dict.fromkeys(models) if model[0] is not None],
        ref_template="#/components/schemas/{model}",
        schema_generator=DocumentSchema,
    )
    for name, schema in components.get("$defs", {}).items():
        spec.components.schema(name, schema)
    for path, method, view in routes:
        spec.path(path, operations={method.lower(): _operation(app, path, method, view, refs)})
    return spec.to_dict()


def _reply(answer: Reply | str) -> Reply:
    return Reply(answer) if isinstance(answer, str) else answer


def _model_in(body: Any) -> type[BaseModel] | None:
    """Return the model of a body (``Model`` or ``list[Model]``); None for a schema or no body."""
    body = get_args(body)[0] if get_origin(body) is list else body
    return body if isinstance(body, type) else None


def _answer(status: int, reply: Reply, refs: dict) -> dict[str, Any]:
    models = (
        RequestIdHeader,
        *reply.headers,
        *((RetryAfterHeader,) if status in (429, 503) else ()),
    )
    headers = {}
    for header in (found for model in models for found in parameters(model, "header")):
        del header["in"]
        headers[header.pop("name")] = header
    answer = {"description": reply.description, "headers": headers}
    if reply.body is not None:
        model = _model_in(reply.body)
        schema = reply.body if model is None else refs[(model, "serialization")]
        schema = {"type": "array", "items": schema} if get_origin(reply.body) is list else schema
        example = {} if reply.example is None else {"example": reply.example}
        answer["content"] = {reply.media_type: {"schema": schema, **example}}
    return answer


def _operation(app: Flask, path: str, method: str, view, refs: dict) -> dict[str, Any]:
    """Return the OpenAPI operation of one route, from what its view recorded."""
    operation: Operation = view.openapi_operation
    summary, _, description = (inspect.getdoc(view) or "").partition("\n\n")
    words = [word[:1].upper() + word[1:] for word in re.split(r"[/.{}]+", path) if word]
    found: dict[str, Any] = {
        "summary": summary.replace("\n", " ").rstrip("."),
        "operationId": method.lower() + "".join(words),
        "tags": [operation.tag],
    }
    params = parameters(operation.path, "path") if operation.path else []
    for model in operation.query:
        params += parameters(model if isinstance(model, type) else model(app.config), "query")
    params += parameters(operation.headers, "header") if operation.headers else []
    undocumented = set(re.findall(r"{([^}]+)}", path)) - {param["name"] for param in params}
    if undocumented:
        raise TypeError(f"{method} {path}: give the model of {sorted(undocumented)} as path=")
    found["parameters"] = [*params, *parameters(RequestIdParameter, "header")]
    answers = dict(operation.answers)
    if operation.tag != OPERATIONS_TAG:
        answers.setdefault(503, UNAVAILABLE)
    if operation.body is not None:
        found["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(operation.body, "validation")]}},
        }
        answers = {
            **{code: text.format_map(app.config) for code, text in BODY_ERRORS.items()},
            **answers,
        }
    scope = getattr(view, "required_scope", None)
    if app.config["AUTH_MODE"] == "on":
        public = path in PUBLIC_PATHS
        found["security"] = (
            [] if public else [{"apiKey": []}, {"bearerAuth": [scope] if scope else []}]
        )
        for code, answer in {} if public else AUTH_ERRORS.items():
            answers.setdefault(code, answer)
        if scope:
            description = f"{description}\n\nNeeds the scope `{scope}`.".strip()
    if description:
        found["description"] = description
    found["responses"] = {
        str(code): _answer(code, _reply(answers[code]), refs) for code in sorted(answers)
    }
    found["responses"]["414"] = URI_TOO_LONG
    return found
