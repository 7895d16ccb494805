"""Readiness: both services answer /health alike, and 503 when their database is down."""

import pytest

from data_collector.app import create_app as create_data_collector
from devstack.stack import free_port
from user_manager.app import create_app as create_user_manager

SERVICES = {
    "user_manager": (create_user_manager, "USER_MANAGER_DATABASE_URL", "outbox"),
    "data_collector": (create_data_collector, "DATA_COLLECTOR_DATABASE_URL", "opensky"),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_health_is_a_503_naming_the_database_when_it_is_unreachable(service, monkeypatch):
    create_app, variable, facts = SERVICES[service]
    # Nothing listens on a port that was free a moment ago: connections are refused at once,
    # to the database and to the peer's gRPC port alike.
    monkeypatch.setenv(variable, f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    for peer in ("USER_MANAGER_GRPC_ADDR", "DATA_COLLECTOR_GRPC_ADDR"):
        monkeypatch.setenv(peer, f"127.0.0.1:{free_port()}")

    response = create_app().test_client().get("/health")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["service"] == service
    assert body["database"] == "unavailable"
    assert body["peer"]["status"] == "unavailable"
    assert body[facts] is None
    assert body["error"] == "The database is unavailable."
