"""What the services say at start: OpenSky without credentials, an open port without auth."""

import pytest

from data_collector.config import Settings as Config


@pytest.fixture
def config_with(monkeypatch):
    def build(client_id: str, client_secret: str) -> Config:
        monkeypatch.setenv("DATA_COLLECTOR_DATABASE_URL", "postgresql://u:p@db:5432/d")
        monkeypatch.setenv("BIND_HOST", "127.0.0.1")
        monkeypatch.setenv("OPENSKY_CLIENT_ID", client_id)
        monkeypatch.setenv("OPENSKY_CLIENT_SECRET", client_secret)
        return Config()

    return build


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        ("your_api_client_id", "your_api_client_secret"),  # .env as shipped
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


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "10.1.2.3", "::"])
def test_listening_beyond_loopback_with_auth_off_is_announced(monkeypatch, bind_host):
    from user_manager.config import Settings as UserManagerConfig

    monkeypatch.setenv("BIND_HOST", bind_host)
    monkeypatch.delenv("AUTH_MODE", raising=False)
    (warning,) = UserManagerConfig().startup_warnings()
    assert "AUTH_MODE=off" in warning and bind_host in warning


@pytest.mark.parametrize(
    ("bind_host", "auth_mode"), [("127.0.0.1", "off"), ("localhost", "off"), ("0.0.0.0", "on")]
)
def test_loopback_or_auth_on_starts_without_that_warning(
    monkeypatch, tmp_path, bind_host, auth_mode
):
    from user_manager.config import Settings as UserManagerConfig

    keys = tmp_path / "keys.json"
    keys.write_text("[]")
    monkeypatch.setenv("BIND_HOST", bind_host)
    monkeypatch.setenv("AUTH_MODE", auth_mode)
    monkeypatch.setenv("API_KEYS_FILE", str(keys))
    assert UserManagerConfig().startup_warnings() == []


def test_auth_on_without_any_credential_source_fails_at_start(monkeypatch):
    from common.settings import ConfigError
    from user_manager.config import Settings as UserManagerConfig

    monkeypatch.setenv("AUTH_MODE", "on")
    monkeypatch.delenv("API_KEYS_FILE", raising=False)
    monkeypatch.delenv("JWT_JWKS_URL", raising=False)
    with pytest.raises(ConfigError, match="API_KEYS_FILE or JWT_JWKS_URL"):
        UserManagerConfig()
