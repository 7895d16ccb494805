"""Readiness: the Data Collector says 503 when its database does not answer."""

from data_collector.app import create_app


def test_health_is_503_when_the_database_is_down(monkeypatch):
    # Nothing listens on port 1: the connection is refused at once.
    monkeypatch.setenv("DATA_COLLECTOR_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    client = create_app().test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"
