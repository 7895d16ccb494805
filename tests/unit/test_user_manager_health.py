"""``GET /health`` of the User Manager when its database cannot be reached."""

from devstack.stack import free_port
from user_manager.app import create_app


def test_health_is_a_503_naming_the_database_when_it_is_unreachable(monkeypatch):
    # Nothing listens on a port that was free a moment ago: the connection is refused.
    monkeypatch.setenv(
        "USER_MANAGER_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    )
    client = create_app().test_client()

    response = client.get("/health")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == "unavailable"
    assert "error" in body
    assert response.headers["Retry-After"] == "5"
