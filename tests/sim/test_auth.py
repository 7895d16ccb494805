"""The OAuth2 token endpoint and how flights endpoints treat tokens."""

import pytest

from opensky_sim.simulator import TOKEN_PATH

from .helpers import GOOD_FORM, bearer, day_start, flights, token


def test_valid_client_gets_a_bearer_token_like_keycloak(client, settings):
    response = client.post(TOKEN_PATH, data=GOOD_FORM)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "access_token",
        "expires_in",
        "refresh_expires_in",
        "token_type",
        "not-before-policy",
        "scope",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.token_lifetime
    assert len(body["access_token"]) >= 20


def test_each_token_request_gets_a_new_token(client):
    assert token(client) != token(client)


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_secret": "wrong"},
        {"client_id": "someone-else"},
        {"client_id": ""},
        {"client_secret": ""},
    ],
)
def test_bad_client_credentials_are_rejected(client, overrides):
    response = client.post(TOKEN_PATH, data={**GOOD_FORM, **overrides})

    assert response.status_code == 401
    assert response.get_json() == {
        "error": "invalid_client",
        "error_description": "Invalid client or Invalid client credentials",
    }


def test_unsupported_grant_type_is_rejected(client):
    response = client.post(TOKEN_PATH, data={**GOOD_FORM, "grant_type": "password"})

    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_token_authenticates_flights_requests(client):
    response = flights(
        client, "departure", day_start(2), day_start(2) + 3600, "LIRF", bearer(token(client))
    )

    assert response.status_code == 200
    assert client.get("/_sim/calls").get_json()[-1]["client"] == "sim-client"


def test_no_authorization_header_is_anonymous(client):
    response = flights(client, "departure", day_start(2), day_start(2) + 3600, "LIRF")

    assert response.status_code == 200
    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 30
    assert client.get("/_sim/credits").get_json()["sim-client"]["used"] == 0


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic c2ltOnNpbQ==", "Bearer"])
def test_unknown_token_gets_401_with_empty_body_and_no_charge(client, header):
    response = flights(
        client, "departure", day_start(2), day_start(2) + 3600, "LIRF", {"Authorization": header}
    )

    assert response.status_code == 401
    assert response.data == b""
    assert "X-Rate-Limit-Remaining" not in response.headers
    assert all(b["used"] == 0 for b in client.get("/_sim/credits").get_json().values())


def test_token_expires_after_its_lifetime(client, settings):
    headers = bearer(token(client))
    begin = day_start(2)

    client.put("/_sim/clock", json={"offset_seconds": settings.token_lifetime - 60})
    assert flights(client, "departure", begin, begin + 3600, "LIRF", headers).status_code == 200

    client.put("/_sim/clock", json={"offset_seconds": settings.token_lifetime + 1})
    response = flights(client, "departure", begin, begin + 3600, "LIRF", headers)
    assert response.status_code == 401
    assert response.data == b""


def test_expire_control_call_invalidates_issued_tokens_only(client):
    old = bearer(token(client))
    begin = day_start(2)

    client.post("/_sim/tokens/expire")

    assert flights(client, "departure", begin, begin + 3600, "LIRF", old).status_code == 401
    fresh = bearer(token(client))
    assert flights(client, "departure", begin, begin + 3600, "LIRF", fresh).status_code == 200
