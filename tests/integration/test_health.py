"""Readiness (GET /health): one shape for both services; a down peer degrades, never fails it."""

import pytest

from data_collector.app import create_app as create_data_collector
from devstack.stack import free_port

COMMON_FIELDS = {"status", "service", "database", "peer"}


def test_both_services_report_database_and_peer_in_one_shape(um, dc):
    user_manager, data_collector = um.get("/health"), dc.get("/health")
    assert user_manager.status_code == data_collector.status_code == 200
    um_body, dc_body = user_manager.json(), data_collector.json()
    assert set(um_body) == COMMON_FIELDS | {"outbox"}
    assert set(dc_body) == COMMON_FIELDS | {"opensky"}
    for body, service, peer in (
        (um_body, "user_manager", "data_collector"),
        (dc_body, "data_collector", "user_manager"),
    ):
        assert body["status"] == "ok"
        assert body["service"] == service
        assert body["database"] == "ok"
        assert body["peer"]["service"] == peer
        assert body["peer"]["status"] == "ok"


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
