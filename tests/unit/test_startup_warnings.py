"""The Data Collector says at start when it will call OpenSky anonymously."""

import pytest

from data_collector.config import Config


@pytest.fixture
def config_with(monkeypatch):
    def build(client_id: str, client_secret: str) -> Config:
        monkeypatch.setenv("DATA_COLLECTOR_DATABASE_URL", "postgresql://u:p@db:5432/d")
        monkeypatch.setenv("OPENSKY_CLIENT_ID", client_id)
        monkeypatch.setenv("OPENSKY_CLIENT_SECRET", client_secret)
        return Config()

    return build


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        ("your_api_client_id", "your_api_client_secret"),  # the seed's .env as shipped
        ("", ""),
        ("my-client", ""),
        ("my-client", "your_api_client_secret"),
    ],
)
def test_placeholder_or_missing_credentials_are_announced(config_with, client_id, client_secret):
    (warning,) = config_with(client_id, client_secret).startup_warnings()
    assert "anonymously" in warning
    assert "OPENSKY_CLIENT_ID" in warning and "OPENSKY_CLIENT_SECRET" in warning


def test_real_credentials_start_quietly(config_with):
    assert config_with("my-client", "s3cret-value").startup_warnings() == []
