"""Property-based fuzzing of both REST APIs against their OpenAPI documents (schemathesis).

Every operation of each document gets requests generated from its schema,
valid and invalid alike, sent to the running services. A response fails the
test when it is a 5xx, has a status the document does not list, or when its
content type, headers or body differ from what the document says.

The documents are built in this process from the same code the services run
(no database is contacted for that) and compared with the ones the services
serve, which keeps test collection independent of the stack while fuzzing
exactly what is served.
"""

import hashlib
import json
import secrets
import tempfile

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import EXPLORE
from tests.utils import Api, api_document, create_user, wait_until

# Random examples per operation, after the deterministic coverage phase schemathesis runs
# first (boundaries, missing and wrong-typed values): about 30 s for both APIs, and
# enough that five consecutive runs found nothing new after the fixes.
MAX_EXAMPLES = 100
# Not checked, and why:
EXCLUDED_CHECKS = [
    # "A request the schema allows must get a 2xx": the schema cannot say what only the
    # code knows (an email's syntax, an IBAN's check digits, which airports and users
    # exist, whether a key was already used), so schema-valid requests rightly get
    # 400/404/422 (all documented; status_code_conformance checks that).
    positive_data_acceptance,
]
DOCUMENTS = {package: api_document(package) for package in ("user_manager", "data_collector")}
# What a request the document forbids may get. Schemathesis's default list, plus 413 (a
# body over the size limit) and 414: a generated query string can outgrow gunicorn's
# request-line limit, and gunicorn refuses it itself (documented on every operation).
REJECTION_STATUSES = [
    "400",
    "401",
    "403",
    "404",
    "405",
    "406",
    "409",
    "413",
    "414",
    "415",
    "422",
    "428",
    "429",
    "5xx",
]
CONFIG = {
    # The same requests every run unless HYPOTHESIS_PROFILE=explore (tests/conftest.py).
    **({} if EXPLORE else {"seed": 20261126}),
    "generation": {"max-examples": MAX_EXAMPLES},
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTION_STATUSES}},
}
user_manager = schemathesis.openapi.from_dict(
    DOCUMENTS["user_manager"], config=SchemathesisConfig.from_dict(CONFIG)
)
data_collector = schemathesis.openapi.from_dict(
    DOCUMENTS["data_collector"], config=SchemathesisConfig.from_dict(CONFIG)
)


@pytest.fixture(scope="module", autouse=True)
def _flights_at_the_example_airport(stack):
    """Have flights stored at LIRF, the documents' example airport, before fuzzing.

    Schemathesis sends the documented examples first: with flights there, the
    flight bodies are validated too, not only empty lists and 404s.
    """
    um, dc = Api(stack.user_manager_url), Api(stack.data_collector_url)
    email = create_user(um)
    assert dc.post("/interests", json={"email": email, "airport_code": "LIRF"}).ok
    wait_until(lambda: dc.get("/flights/LIRF", params={"limit": "1"}).json(), timeout=30)


@pytest.mark.parametrize("package", sorted(DOCUMENTS))
def test_the_fuzzed_documents_are_the_ones_the_services_serve(package, um, dc):
    api = um if package == "user_manager" else dc
    assert api.get("/openapi.json").json() == DOCUMENTS[package]


@user_manager.parametrize()
def test_user_manager_conforms_to_its_document(case, stack):
    case.call_and_validate(base_url=stack.user_manager_url, excluded_checks=EXCLUDED_CHECKS)


@data_collector.parametrize()
def test_data_collector_conforms_to_its_document(case, stack):
    case.call_and_validate(base_url=stack.data_collector_url, excluded_checks=EXCLUDED_CHECKS)


# With AUTH_MODE=on, the same documents fuzzed with a credential that may do everything
# (every scope, admin): what the schema allows must still conform, now through the checks.
SECURE_EXAMPLES = 30
SECURE_CONFIG = {**CONFIG, "generation": {"max-examples": SECURE_EXAMPLES}}


def secure_document(package: str) -> dict:
    """The document a service serves with AUTH_MODE=on (each operation's scope, 401, 403)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as keys:
        key = secrets.token_urlsafe(16)
        digest = hashlib.sha256(key.encode()).hexdigest()
        keys.write(json.dumps([{"name": "reader", "sha256": digest, "scopes": []}]))
        keys.flush()
        return api_document(package, {"X-API-Key": key}, AUTH_MODE="on", API_KEYS_FILE=keys.name)


SECURE_DOCUMENTS = {package: secure_document(package) for package in DOCUMENTS}
secure_user_manager = schemathesis.openapi.from_dict(
    SECURE_DOCUMENTS["user_manager"], config=SchemathesisConfig.from_dict(SECURE_CONFIG)
)
secure_data_collector = schemathesis.openapi.from_dict(
    SECURE_DOCUMENTS["data_collector"], config=SchemathesisConfig.from_dict(SECURE_CONFIG)
)


@pytest.mark.parametrize("package", sorted(SECURE_DOCUMENTS))
def test_with_auth_on_the_fuzzed_documents_are_the_ones_served(package, secure_stack):
    api = secure_stack.um if package == "user_manager" else secure_stack.dc
    served = api.get("/openapi.json", headers=secure_stack.keys.header("none")).json()
    assert served == SECURE_DOCUMENTS[package]
    assert served["paths"]["/ping"]["get"]["security"] == []


@secure_user_manager.parametrize()
def test_user_manager_with_auth_on_conforms_to_its_document(case, secure_stack):
    case.call_and_validate(
        base_url=secure_stack.stack.user_manager_url,
        headers=secure_stack.keys.header("bound-admin"),
        excluded_checks=EXCLUDED_CHECKS,
    )


@secure_data_collector.parametrize()
def test_data_collector_with_auth_on_conforms_to_its_document(case, secure_stack):
    case.call_and_validate(
        base_url=secure_stack.stack.data_collector_url,
        headers=secure_stack.keys.header("bound-admin"),
        excluded_checks=EXCLUDED_CHECKS,
    )
