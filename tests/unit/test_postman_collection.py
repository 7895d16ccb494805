"""The Postman collection: generated from devstack/postman.py, and covering every endpoint."""

import json
import re

import pytest

from devstack import postman
from tests.utils import api_document

BASES = {"um_url": "user_manager", "dc_url": "data_collector", "sla_url": "sla_detector"}
COLLECTION = json.loads(postman.COLLECTION_FILE.read_text())


def requests_of(items: list[dict]) -> list[dict]:
    """Every request item, in run order (folders flattened)."""
    found = []
    for item in items:
        found.extend(requests_of(item["item"]) if "item" in item else [item])
    return found


REQUESTS = requests_of(COLLECTION["item"])


def test_the_committed_files_are_what_make_postman_writes():
    assert postman.COLLECTION_FILE.read_text() == postman.render(postman.collection()), (
        "run `make postman` after changing devstack/postman.py"
    )
    assert postman.ENVIRONMENT_FILE.read_text() == postman.render(postman.environment())


def test_the_collection_is_a_v2_1_collection_with_an_environment_for_the_base_urls():
    assert COLLECTION["info"]["schema"].endswith("/collection/v2.1.0/collection.json")
    environment = json.loads(postman.ENVIRONMENT_FILE.read_text())
    assert {value["key"] for value in environment["values"]} == set(BASES)
    used = {item["request"]["url"]["host"][0].strip("{}") for item in REQUESTS}
    assert used == set(BASES)


@pytest.mark.parametrize("package", sorted(BASES.values()))
def test_every_documented_operation_is_in_the_collection(package):
    base = next(name for name, service in BASES.items() if service == package)
    sent = [
        (item["request"]["method"], item["request"]["url"]["path"])
        for item in REQUESTS
        if item["request"]["url"]["host"] == [f"{{{{{base}}}}}"]
    ]
    document = api_document(package)
    for path, operations in document["paths"].items():
        template = [re.sub(r"^\{.*\}$", "*", part) for part in path.strip("/").split("/")]
        for method in operations:
            assert any(
                sent_method == method.upper()
                and len(segments) == len(template)
                and all(t in ("*", s) for t, s in zip(template, segments, strict=True))
                for sent_method, segments in sent
            ), f"no request for {method.upper()} {path}"


def test_every_request_asserts_its_status():
    for item in REQUESTS:
        tests = next(e for e in item["event"] if e["listen"] == "test")["script"]["exec"]
        assert any("to.have.status(" in line or "response.code" in line for line in tests), item[
            "name"
        ]


def test_user_writes_carry_an_idempotency_key_except_scenario_4():
    for item in REQUESTS:
        request = item["request"]
        if request["method"] in ("POST", "DELETE") and request["url"]["path"][:1] == ["users"]:
            has_key = any(h["key"] == "Idempotency-Key" for h in request["header"])
            assert has_key != item["name"].startswith("Scenario 4"), item["name"]


def test_the_seed_scenarios_run_in_order_for_create_and_delete():
    names = [item["name"] for item in REQUESTS]
    for method in ("POST", "DELETE"):
        scenarios = [
            item["name"][: len("Scenario N")]
            for item in REQUESTS
            if item["request"]["method"] == method and item["name"].startswith("Scenario")
        ]
        assert scenarios == ["Scenario 1", "Scenario 2", "Scenario 3", "Scenario 4"], method
    assert names.index("Follow an airport (201)") < names.index(
        next(name for name in names if name.startswith("Scenario 1: first request deletes"))
    )
