"""Readiness (GET /health): one shape for both services; a down peer degrades, never fails it."""

import pytest

from data_collector.app import create_app as create_data_collector
from devstack.stack import free_port
from tests.integration.auth_support import AUDIENCE, ISSUER, IdentityProvider, bearer
from tests.integration.auth_support import ApiKeys as KeysFile
from tests.utils import AppClient, wait_until
from user_manager.app import create_app as create_user_manager

COMMON_FIELDS = {"status", "service", "database", "peer", "api_keys"}


def test_both_services_report_database_and_peer_in_one_shape(um, dc):
    user_manager, data_collector = um.get("/health"), dc.get("/health")
    assert user_manager.status_code == data_collector.status_code == 200
    um_body, dc_body = user_manager.json(), data_collector.json()
    assert set(um_body) == COMMON_FIELDS | {"outbox"}
    # The collector publishes to the Alert System: it reports the broker too.
    assert set(dc_body) == COMMON_FIELDS | {"opensky", "broker"}
    assert dc_body["broker"]["status"] == "ok"
    for body, service, peer in (
        (um_body, "user_manager", "data_collector"),
        (dc_body, "data_collector", "user_manager"),
    ):
        assert body["status"] == "ok"
        assert body["service"] == service
        assert body["database"] == "ok"
        assert body["peer"]["service"] == peer
        assert body["peer"]["status"] == "ok"
        assert body["api_keys"] is None  # authentication is off: no keys file


@pytest.mark.local_stack
def test_a_collector_whose_user_manager_is_down_is_degraded_but_ready(local_stack, monkeypatch):
    # The stack's database, and a User Manager address where nothing listens.
    monkeypatch.setenv(
        "DATA_COLLECTOR_DATABASE_URL", local_stack.database_urls["DATA_COLLECTOR_DATABASE_URL"]
    )
    monkeypatch.setenv("USER_MANAGER_GRPC_ADDR", f"127.0.0.1:{free_port()}")

    response = create_data_collector().test_client().get("/health")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["peer"]["status"] == "unavailable"
    assert "credits_remaining" in body["opensky"]


SERVICES = {
    "user_manager": (create_user_manager, "USER_MANAGER_DATABASE_URL", "DATA_COLLECTOR_GRPC_ADDR"),
    "data_collector": (
        create_data_collector,
        "DATA_COLLECTOR_DATABASE_URL",
        "USER_MANAGER_GRPC_ADDR",
    ),
}


@pytest.fixture
def identity_provider():
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.mark.local_stack
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_keys_file_removed_while_running_accepts_no_key_and_degrades_health(
    local_stack, identity_provider, tmp_path, service
):
    create_app, database, peer = SERVICES[service]
    keys = KeysFile(tmp_path / "api-keys.json")
    key = keys.add("ops", ["ops"])
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": local_stack.database_urls[database],
            peer: local_stack.env[peer],
            # The collector reports its broker too: the stack's, which is up.
            "NATS_URL": local_stack.broker_url,
            "AUTH_MODE": "on",
            "API_KEYS_FILE": str(keys.path),
            "JWT_JWKS_URL": identity_provider.jwks_url,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
        }
    )
    client = AppClient(app)
    with_key = {"X-API-Key": key}
    token = bearer(identity_provider.token(["ops"]))
    healthy = client.get("/health", headers=with_key)
    assert healthy.status_code == 200, healthy.text
    assert healthy.json()["status"] == "ok"
    assert healthy.json()["api_keys"] == {"status": "ok", "keys": 1}

    keys.path.unlink()
    # The file is checked every two seconds: a key still works until the next check.
    refused = wait_until(
        lambda: (r := client.get("/metrics", headers=with_key)).status_code != 200 and r
    )
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"]
    health = client.get("/health", headers=token)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "degraded"
    assert health.json()["api_keys"]["status"] == "unavailable"
    assert str(keys.path) in health.json()["api_keys"]["error"]
    assert client.get("/health", headers=with_key).status_code == 503
    assert client.get("/metrics", headers=with_key).status_code == 503  # and stays so

    keys.add("another", ["ops"])  # the file is back, with one key more
    back = wait_until(
        lambda: (r := client.get("/health", headers=with_key)).status_code == 200 and r
    )
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "ok"
    assert back.json()["api_keys"] == {"status": "ok", "keys": 2}
