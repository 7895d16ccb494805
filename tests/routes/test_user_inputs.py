"""Every input rule of the User Manager, and property-based proof that no input yields a 5xx.

Route-level: the requests go to the app in this process (Flask's test client
on the suite's real database; over HTTP against a remote stack).
"""

import re
import uuid
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.web.pagination import encode_cursor
from tests.utils import Api, AppClient, create_user, new_key, unique_email, user_payload

# Enough generated requests to find the odd character, few enough to stay fast.
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def um(um_client):
    return um_client


def post_user(um: Api | AppClient, body, **kwargs) -> requests.Response:
    return um.post("/users", json=body, headers=new_key(), **kwargs)


def assert_rejected(response: requests.Response, *fields: str) -> None:
    assert response.status_code == 400, response.text
    details = response.json()["details"]
    for field in fields:
        assert field in details, f"{field} not named in {details}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "two@@example.com"),
        ("email", "spaces in@example.com"),
        ("email", "a" * 250 + "@example.com"),
        ("email", ""),
        ("first_name", ""),
        ("first_name", "   "),
        ("first_name", "\u200b"),
        ("first_name", "x" * 101),
        ("first_name", "nul\u0000byte"),
        ("last_name", ""),
        ("last_name", "tab\tinside"),
        ("last_name", "y" * 101),
        ("tax_code", "abc"),
        ("tax_code", "x" * 33),
        ("tax_code", "RSS*MRA"),
        ("tax_code", "ÄÖÜ12345"),
        ("iban", "IT60X0542811101000000123457"),
        ("iban", "DE00370400440532013000"),
        ("iban", "DE8937040044053201300"),
        ("iban", "XX89370400440532013000"),
        ("iban", "IT60-X054-2811"),
        ("iban", "I" * 40),
    ],
)
def test_invalid_field_is_a_400_naming_it(um, field, value):
    body = user_payload()
    body[field] = value
    assert_rejected(post_user(um, body), field)


@pytest.mark.parametrize("field", ["email", "first_name", "last_name"])
def test_missing_required_field_is_a_400_naming_it(um, field):
    body = user_payload()
    del body[field]
    assert_rejected(post_user(um, body), field)


@pytest.mark.parametrize("value", [123, 1.5, True, ["a"], {"a": 1}])
@pytest.mark.parametrize("field", ["email", "first_name", "last_name", "tax_code", "iban"])
def test_wrong_json_type_is_a_400_naming_the_field(um, field, value):
    body = user_payload()
    body[field] = value
    assert_rejected(post_user(um, body), field)


def test_null_is_refused_for_required_fields_and_means_absent_for_optional_ones(um):
    assert_rejected(post_user(um, user_payload(first_name=None)), "first_name")
    response = post_user(um, user_payload(tax_code=None, iban=None))
    assert response.status_code == 201
    assert response.json()["user"]["tax_code"] is None


def test_unknown_field_is_a_400_naming_it(um):
    assert_rejected(post_user(um, user_payload(is_admin=True)), "is_admin")


def test_every_offending_field_is_named_at_once(um):
    body = {"email": "nope", "first_name": "", "iban": "IT00", "extra": 1}
    assert_rejected(post_user(um, body), "email", "first_name", "last_name", "iban", "extra")


def test_validation_errors_do_not_create_users(um):
    body = user_payload(iban="IT60X0542811101000000123457")
    assert post_user(um, body).status_code == 400
    assert um.get(f"/users/{body['email']}").status_code == 404


def digits(count: int) -> str:
    """Random digits, so that tax codes stay unique across reruns against one stack."""
    return str(uuid.uuid4().int)[:count]


@pytest.mark.parametrize(
    "template",
    [
        "rssmra80a01h{3}u",  # Italian codice fiscale
        "{3}-{2}-{4}",  # US SSN
        "{2} {3} {3} {3}",  # German Steuer-ID
        "{3}.{3}.{3}-{2}",  # Brazilian CPF, whose checksum is not ours to judge
        "{17}X",  # Chinese resident ID
    ],
)
def test_tax_codes_are_normalized_and_foreign_ones_accepted(um, template):
    given_value = re.sub(r"\{(\d+)\}", lambda group: digits(int(group[1])), template)
    response = post_user(um, user_payload(tax_code=given_value))
    assert response.status_code == 201, response.text
    assert response.json()["user"]["tax_code"] == re.sub(r"[ .-]", "", given_value).upper()


def test_tax_code_is_unique_after_normalization(um):
    code = "TC" + uuid.uuid4().hex[:12].upper()
    create_user(um, tax_code=code)
    spaced = " ".join(code[i : i + 4] for i in range(0, len(code), 4)).lower()
    duplicate = post_user(um, user_payload(tax_code=spaced))
    assert duplicate.status_code == 409
    assert "tax_code" in duplicate.json()["error"]


@pytest.mark.parametrize(
    ("given_value", "stored"),
    [
        ("IT60 X054 2811 1010 0000 0123 456", "IT60X0542811101000000123456"),
        ("de89370400440532013000", "DE89370400440532013000"),
        ("GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
        ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
        ("NO9386011117947", "NO9386011117947"),
    ],
)
def test_ibans_are_normalized_and_checked(um, given_value, stored):
    response = post_user(um, user_payload(iban=given_value))
    assert response.status_code == 201, response.text
    assert response.json()["user"]["iban"] == stored


def test_names_are_trimmed_and_any_script_is_welcome(um):
    body = user_payload(first_name="  José María ", last_name="李" + "x" * 99)
    response = post_user(um, body)
    assert response.status_code == 201
    assert response.json()["user"]["first_name"] == "José María"


def test_body_that_is_not_json_is_a_415_or_400(um):
    key = new_key()
    form = um.post("/users", data="email=a@b.c", headers=key)
    assert form.status_code == 415
    assert "error" in form.json()

    json_type = {**key, "Content-Type": "application/json"}
    for body, error in [
        ("{broken", "The request body is not valid JSON."),
        (b"\xff\xfe", "The request body is not valid JSON."),
        ("[1, 2]", "The request body must be a JSON object."),
        ('"text"', "The request body must be a JSON object."),
        ("null", "The request body must be a JSON object."),
    ]:
        response = um.post("/users", data=body, headers=json_type)
        assert response.status_code == 400, body
        assert response.json()["error"] == error, body


def test_oversized_body_is_a_json_413(um):
    body = user_payload(first_name="x" * 100_000)
    response = post_user(um, body)
    assert response.status_code == 413
    assert "error" in response.json()


# Property-based: nothing a client can send produces a 5xx.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
field_values = st.one_of(st.text(max_size=120), json_values)
user_bodies = st.fixed_dictionaries(
    {},
    optional={
        "email": field_values
        | st.emails().map(str)
        | st.builds(lambda a: f"{a}@example.com", st.text(min_size=1, max_size=20)),
        "first_name": field_values,
        "last_name": field_values,
        "tax_code": field_values,
        "iban": field_values,
        "unexpected": json_values,
    },
)
# What an HTTP client can put in a header value at all (latin-1, no line breaks).
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
).map(str.strip)


def assert_no_server_error(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400 and response.headers.get("Content-Type") == "application/json":
        assert "error" in response.json()


@pytest.fixture
def api(um_client):
    return um_client


@PROPERTY_SETTINGS
@given(body=json_values | user_bodies)
def test_no_json_body_yields_a_server_error(api, body):
    assert_no_server_error(api.post("/users", json=body, headers=new_key()))


@PROPERTY_SETTINGS
@given(raw=st.binary(max_size=200), content_type=header_text)
def test_no_raw_body_or_content_type_yields_a_server_error(api, raw, content_type):
    headers = {**new_key(), "Content-Type": content_type}
    assert_no_server_error(api.post("/users", data=raw, headers=headers))


@PROPERTY_SETTINGS
@given(key=header_text, method=st.sampled_from(["POST", "DELETE"]))
def test_no_idempotency_key_yields_a_server_error(api, key, method):
    path = "/users" if method == "POST" else f"/users/{unique_email()}"
    response = api.request(
        method, path, json=user_payload(), headers={"Idempotency-Key": key.encode("latin-1")}
    )
    assert_no_server_error(response)


@PROPERTY_SETTINGS
@given(segment=st.text(max_size=300), method=st.sampled_from(["GET", "DELETE"]))
def test_no_path_yields_a_server_error(api, segment, method):
    response = api.request(method, "/users/" + quote(segment, safe="@"), headers=new_key())
    assert_no_server_error(response)


@PROPERTY_SETTINGS
@given(
    limit=st.text(max_size=20) | st.integers().map(str),
    cursor=st.text(max_size=80) | st.lists(json_values, max_size=2).map(encode_cursor),
)
def test_no_list_query_yields_a_server_error(api, limit, cursor):
    assert_no_server_error(api.get("/users", params={"limit": limit, "cursor": cursor}))


# Parameter names that collide with Flask's url_for() keywords or a view argument.
TRICKY_PARAMETER_NAMES = st.sampled_from(["endpoint", "_external", "_anchor", "_method", "email"])


@PROPERTY_SETTINGS
@given(
    extra=st.dictionaries(TRICKY_PARAMETER_NAMES | st.text(max_size=20), st.text(max_size=20)),
)
def test_unknown_query_parameters_never_yield_a_server_error(api, extra):
    # limit=1 with more than one user stored: the answer builds a Link to the next page.
    response = api.get("/users", params={**extra, "limit": "1"})
    assert_no_server_error(response)


def test_a_long_email_in_the_path_is_a_400_not_a_crash(um):
    assert um.get("/users/" + "a" * 300 + "@example.com").status_code == 400
    assert um.get(f"/users/{unique_email()}%00").status_code == 400
