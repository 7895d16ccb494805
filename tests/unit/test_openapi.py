"""The OpenAPI documents: valid OpenAPI 3.1, and exactly the routes each app serves."""

import re

import pytest
from flask import Flask
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from common.web.auth import requires
from common.web.openapi import Answer, Reply, documented, install_api_docs
from data_collector.app import create_app as create_data_collector
from data_collector.inputs import InterestRequest
from devstack.stack import free_port
from user_manager.app import create_app as create_user_manager
from user_manager.inputs import UserCreate

APPS = {"user_manager": create_user_manager, "data_collector": create_data_collector}
BODY_MODELS = {"user_manager": UserCreate, "data_collector": InterestRequest}
# The Swagger UI page and its assets: HTML for people, not part of the JSON API.
UNDOCUMENTED_BLUEPRINTS = {"swagger_ui"}
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(params=sorted(APPS))
def app(request, monkeypatch):
    # Nothing is connected while the app is built; an address nobody listens on will do.
    for variable in ("USER_MANAGER_DATABASE_URL", "DATA_COLLECTOR_DATABASE_URL"):
        monkeypatch.setenv(variable, f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    app = APPS[request.param]()
    app.config["SERVICE"] = request.param
    return app


def flask_operations(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app serves."""
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in UNDOCUMENTED_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operations |= {(method, path) for method in rule.methods - IMPLICIT_METHODS}
    return operations


def document_operations(document) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def test_the_document_is_valid_openapi_3_1(app):
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_lists_exactly_the_routes_the_app_serves(app):
    document = app.test_client().get("/openapi.json").get_json()
    assert document_operations(document) == flask_operations(app)


def test_every_operation_documents_its_errors_and_the_request_id(app):
    document = app.test_client().get("/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            for status, answer in operation["responses"].items():
                if status == "414":
                    continue  # gunicorn's, before the app (and its request id) is reached
                assert "X-Request-ID" in answer.get("headers", {}), f"{where} {status}"
                if status.startswith(("4", "5")) and path != "/health":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{where} {status}"
                if status == "503":
                    assert "Retry-After" in answer["headers"], where
            has_body = "requestBody" in operation
            for status in ("400", "413", "415"):
                if has_body:
                    assert status in operation["responses"], f"{where} lacks {status}"
            if any(p["name"] == "Idempotency-Key" for p in operation["parameters"]):
                assert {"400", "422"} <= set(operation["responses"]), where


def test_request_bodies_are_the_models_the_routes_validate_with(app):
    document = app.test_client().get("/openapi.json").get_json()
    model = BODY_MODELS[app.config["SERVICE"]]
    expected = model.model_json_schema()
    documented = document["components"]["schemas"][model.__name__]
    assert documented["required"] == expected["required"]
    assert documented["additionalProperties"] is False
    assert documented["properties"].keys() == expected["properties"].keys()
    for name, rules in expected["properties"].items():
        for keyword, value in rules.items():
            if keyword not in ("title", "description", "examples"):
                assert documented["properties"][name][keyword] == value, (name, keyword)


class Reading(BaseModel):
    """A body a new route validates with."""

    value: int = Field(ge=0, description="How much.")


class Saved(Answer):
    """What the new route answers."""

    id: int


def small_app(**config) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config.update({"AUTH_MODE": "off", "MAX_CONTENT_LENGTH": 1024, **config})
    return app


READING_TAGS = {"readings": "What the sensors read."}


def test_a_new_route_is_documented_by_its_decorator_alone():
    app = small_app(AUTH_MODE="on")

    def save():
        """Save a reading.

        Kept for a day.
        """
        return {"id": 1}, 201

    decorate = documented(
        tag="readings", body=Reading, answers={201: Reply("Saved.", Saved), 409: "Taken."}
    )
    # Only recorded: the view that serves requests is the function itself.
    assert decorate(save) is save
    app.post("/readings")(requires("readings:write")(save))
    install_api_docs(app, "Readings: what the sensors read.\n\nKept a day.", READING_TAGS)

    document = app.test_client().get("/openapi.json").get_json()
    validate(document)
    assert document["info"]["title"] == "Readings API"
    assert document["info"]["summary"] == "What the sensors read."
    assert document["info"]["description"].startswith("Kept a day.\n\n**Errors** are JSON")
    operation = document["paths"]["/readings"]["post"]
    assert operation["summary"] == "Save a reading"
    assert operation["description"] == "Kept for a day.\n\nNeeds the scope `readings:write`."
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Reading"
    }
    assert document["components"]["schemas"]["Reading"]["properties"]["value"]["minimum"] == 0
    assert set(operation["responses"]) == {
        "201",
        "400",
        "401",
        "403",
        "409",
        "413",
        "414",
        "415",
        "503",
    }
    assert "1024 bytes" in operation["responses"]["413"]["description"]
    assert operation["security"] == [{"apiKey": []}, {"bearerAuth": ["readings:write"]}]


def test_a_tag_nobody_described_stops_the_app_from_starting():
    app = small_app()
    app.get("/readings")(documented(tag="readings", answers={200: "Read."})(lambda: ""))
    with pytest.raises(TypeError, match="say what 'readings' means in TAGS"):
        install_api_docs(app, "T: t.\n\nAn overview.", {})


def test_an_undocumented_route_stops_the_app_from_starting():
    app = small_app()
    app.get("/secret")(lambda: "")
    with pytest.raises(TypeError, match="/secret is not documented"):
        install_api_docs(app, "T: t.\n\nAn overview.", {})


@pytest.mark.parametrize("overview", [None, "T: t.", "No name and summary.\n\nAn overview."])
def test_a_service_package_without_its_overview_stops_the_app_from_starting(overview):
    app = small_app()
    with pytest.raises(TypeError, match="a blank line, then the overview"):
        install_api_docs(app, overview, {})
