"""The OpenAPI documents keep the contract recorded in ``openapi_recorded/``.

The recordings are the documents both services served (auth off and on)
when they were still written by hand. The documents generated now must
describe the same API: the same operations, parameters, request bodies,
answers (status codes, schemas, headers), security and security schemes.
Wording may change; a description, summary or example that was there must
still be there. Schemas are compared with every ``$ref`` resolved, so how
components are named and split does not matter, only what they allow.

Differences a generator makes without changing what is allowed are
normalised on both sides before comparing (:func:`normalize` says which).
To change the contract on purpose, record the documents again::

    .venv/bin/python -m tests.unit.test_openapi_contract
"""

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.utils import api_document

RECORDED = Path(__file__).parent / "openapi_recorded"
PACKAGES = ("user_manager", "data_collector")
AUTH_MODES = ("off", "on")
# Prose and samples: their text may change, but not whether they are there.
ANNOTATIONS = {"description", "summary", "example", "examples"}
KEY = "recording-key"


def served_document(package: str, auth: str) -> dict:
    """Build ``package``'s document in this process, with auth off or on (a throw-away key)."""
    if auth == "off":
        return api_document(package)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as keys:
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        keys.write(json.dumps([{"name": "reader", "sha256": digest, "scopes": []}]))
        keys.flush()
        return api_document(package, {"X-API-Key": KEY}, AUTH_MODE="on", API_KEYS_FILE=keys.name)


def recorded_document(package: str, auth: str) -> dict:
    return json.loads((RECORDED / f"{package}.auth-{auth}.json").read_text())


def resolve(node: Any, document: dict) -> Any:
    """Return ``node`` with every ``$ref`` replaced by (a resolved copy of) what it names."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return resolve({**target, **siblings}, document)
        return {key: resolve(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, document) for item in node]
    return node


def normalize(node: Any) -> Any:
    """Return ``node`` (resolved) in one spelling of each thing said several ways.

    - ``title`` goes: pydantic names every schema and property after the
      code; a name constrains nothing.
    - A description, summary or example becomes a mark of presence; an
      example on a media type counts as an example of its schema (pydantic
      puts a model's examples on its schema, the hand-written document put
      them beside it), and ``examples`` counts as ``example``.
    - ``anyOf: [X, {"type": "null"}]`` (pydantic's nullable) is X with
      ``"null"`` added to its ``type`` (the hand-written spelling).
    - ``const: x`` (pydantic's one-value ``Literal``) is ``enum: [x]``.
    - ``required`` and ``enum`` lists are sets; a parameter or header says
      ``required: false`` when it says nothing.
    - Parameters are keyed by where and name, not listed in order.
    """
    if isinstance(node, list):
        return [normalize(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "anyOf" in node:
        rest = [option for option in node["anyOf"] if option != {"type": "null"}]
        if len(rest) == 1 and len(node["anyOf"]) == 2 and isinstance(rest[0].get("type"), str):
            node = {**{k: v for k, v in node.items() if k != "anyOf"}, **rest[0]}
            node["type"] = [rest[0]["type"], "null"]
    node = {key: value for key, value in node.items() if key != "title"}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "example" in node and isinstance(node.get("schema"), dict) and "in" not in node:
        node["schema"] = {**node["schema"], "example": True}
        del node["example"]
    normal: dict[str, Any] = {}
    for key, value in node.items():
        if key in ANNOTATIONS:
            normal["example" if key == "examples" else key] = True
        elif key in ("required", "enum") and isinstance(value, list):
            normal[key] = sorted(value, key=json.dumps)
        elif key == "parameters" and isinstance(value, list):
            normal[key] = {
                f"{item['in']} {item['name']}": normalize({"required": False, **item})
                for item in value
            }
        elif key == "headers" and isinstance(value, dict):
            normal[key] = {
                name: normalize({"required": False, **header}) for name, header in value.items()
            }
        else:
            normal[key] = normalize(value)
    return normal


def differences(recorded: Any, generated: Any, where: str = "") -> list[str]:
    """Say where ``generated`` does not keep what ``recorded`` (both normalized) says."""
    if isinstance(recorded, dict) and isinstance(generated, dict):
        found = []
        for key in recorded.keys() | generated.keys():
            here = f"{where}/{key}"
            if key not in generated:
                found.append(f"{here}: missing")
            elif key not in recorded:
                if key not in ANNOTATIONS:  # more prose or examples than before is fine
                    found.append(f"{here}: added {json.dumps(generated[key])[:200]}")
            else:
                found += differences(recorded[key], generated[key], here)
        return found
    if (
        isinstance(recorded, list)
        and isinstance(generated, list)
        and len(recorded) == len(generated)
    ):
        return [
            problem
            for index, (old, new) in enumerate(zip(recorded, generated, strict=True))
            for problem in differences(old, new, f"{where}[{index}]")
        ]
    if recorded != generated:
        return [f"{where}: was {json.dumps(recorded)[:200]}, is {json.dumps(generated)[:200]}"]
    return []


def contract(document: dict) -> dict:
    """What the comparison looks at: everything a client relies on, references resolved."""
    return normalize(
        {
            "openapi": document["openapi"],
            "info": {key: document["info"][key] for key in ("title", "description")},
            "tags": document["tags"],
            "paths": resolve(document["paths"], document),
            "securitySchemes": document["components"]["securitySchemes"],
        }
    )


@pytest.mark.parametrize("auth", AUTH_MODES)
@pytest.mark.parametrize("package", PACKAGES)
def test_the_document_keeps_the_recorded_contract(package, auth):
    recorded = contract(recorded_document(package, auth))
    generated = contract(served_document(package, auth))
    assert differences(recorded, generated) == []


def test_the_comparison_notices_a_changed_answer():
    recorded = recorded_document("user_manager", "off")
    changed = json.loads(json.dumps(recorded))
    del changed["paths"]["/users/{email}"]["get"]["responses"]["404"]
    changed["components"]["schemas"]["User"]["properties"]["email"]["type"] = "integer"
    del changed["paths"]["/users"]["get"]["summary"]
    found = differences(contract(recorded), contract(changed))
    assert "/paths//users/{email}/get/responses/404: missing" in found
    assert "/paths//users/get/summary: missing" in found
    assert any(
        "/responses/200/content/application/json/schema/properties/email/type" in problem
        for problem in found
    )


if __name__ == "__main__":
    for package in PACKAGES:
        for auth in AUTH_MODES:
            path = RECORDED / f"{package}.auth-{auth}.json"
            path.write_text(json.dumps(served_document(package, auth), indent=2) + "\n")
            print(f"recorded {path}")
