"""Settings from the environment: one sentence for a bad value, blank as unset, the cross-checks."""

import os
import subprocess
import sys

import pytest
from pydantic import Field

from common.settings import ConfigError, Port, ServiceSettings, named_after
from data_collector.config import Settings as DataCollectorSettings
from user_manager.config import Settings as UserManagerSettings

SERVICES = (UserManagerSettings, DataCollectorSettings)


@pytest.fixture
def environment(monkeypatch):
    """An environment in which the services read none of their settings."""
    for settings in SERVICES:
        for variable in settings.variables():
            monkeypatch.delenv(variable, raising=False)
            monkeypatch.delenv(f"{variable}_FILE", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("settings", "variable", "value", "allowed"),
    [
        (UserManagerSettings, "DB_POOL_SIZE", "five", "a whole number"),
        (UserManagerSettings, "DB_POOL_SIZE", "2.5", "a whole number"),
        (UserManagerSettings, "GRPC_TIMEOUT_SECONDS", "soon", "a number"),
        (UserManagerSettings, "WEB_THREADS", "0", "at least 1"),
        (UserManagerSettings, "OUTBOX_MAX_BACKOFF_SECONDS", "0.5", "at least 1"),
        (DataCollectorSettings, "COLLECT_POLL_SECONDS", "0.01", "at least 0.1"),
        (DataCollectorSettings, "COLLECT_BACKFILL_DAYS", "-1", "at least 0"),
        (UserManagerSettings, "AUTH_MODE", "maybe", "'off' or 'on'"),
        (DataCollectorSettings, "COLLECT_SWEEP", "sometimes", "'auto' or 'never'"),
        (UserManagerSettings, "FAULT_INJECTION_ENABLED", "perhaps", "true or false"),
        (UserManagerSettings, "USER_MANAGER_HTTP_PORT", "http", "a whole number"),
        (DataCollectorSettings, "WEB_CONCURRENCY", "0", "at least 1"),
        # Values the code could not honour: a port past 16 bits (the system would wrap it),
        # a timeout PostgreSQL refuses (then every connection fails), infinity anywhere, a
        # retention whose dates leave the calendar, a level logging does not know.
        (UserManagerSettings, "USER_MANAGER_HTTP_PORT", "99999", "at most 65535"),
        (UserManagerSettings, "DB_STATEMENT_TIMEOUT_MS", "3000000000", "at most 2147483647"),
        (DataCollectorSettings, "DB_WORKER_TIMEOUT_MS", "2147483648", "at most 2147483647"),
        (UserManagerSettings, "IDEMPOTENCY_KEY_RETENTION_HOURS", "inf", "a finite number"),
        (UserManagerSettings, "GRPC_TIMEOUT_SECONDS", "nan", "a finite number"),
        (DataCollectorSettings, "OPENSKY_TIMEOUT_SECONDS", "1e10", "at most 3600"),
        (DataCollectorSettings, "RETENTION_DAYS", "1000000", "at most 3650"),
        (DataCollectorSettings, "CONSUMER_ACK_WAIT_SECONDS", "1e10", "at most 3600"),
        (
            UserManagerSettings,
            "LOG_LEVEL",
            "LOUD",
            "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
        ),
        (UserManagerSettings, "LOG_FORMAT", "xml", "'text' or 'json'"),
        # URLs that could only fail at every use: no scheme or host, a query the code would
        # append its path after, a port that is no port.
        (DataCollectorSettings, "NATS_URL", "garbage", "a URL (nats or tls) with a host"),
        (DataCollectorSettings, "NATS_URL", "http://nats:4222", "a URL (nats or tls) with a host"),
        (DataCollectorSettings, "OPENSKY_API_URL", "https://x/api?k=1", "a URL (http or https)"),
        (DataCollectorSettings, "OPENSKY_TOKEN_URL", "http://x:99999/t", "a URL (http or https)"),
        (UserManagerSettings, "JWT_JWKS_URL", "/jwks.json", "a URL (http or https) with a host"),
        (UserManagerSettings, "USER_MANAGER_PUBLIC_URL", "api.example.com", "a URL (http or"),
    ],
)
def test_a_bad_value_is_refused_in_one_sentence_naming_variable_value_and_allowed(
    environment, settings, variable, value, allowed
):
    environment.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        settings()
    sentence = str(refused.value)
    assert sentence.startswith(f"{variable} must be {allowed}"), sentence
    assert sentence.endswith(f"got {value!r}."), sentence
    assert "\n" not in sentence and "validation error" not in sentence


def test_the_launcher_says_the_sentence_and_exits_with_2():
    command = [sys.executable, "-m", "user_manager", "healthcheck"]
    refused = subprocess.run(
        command, env={**os.environ, "WEB_THREADS": "0"}, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert refused.stderr == "user_manager: WEB_THREADS must be at least 1, got '0'.\n"


def test_a_supervising_launcher_leaves_the_refusal_to_its_child_without_a_traceback():
    """It logs before any settings are checked, at a level the environment may misspell."""
    command = [sys.executable, "-m", "user_manager"]
    refused = subprocess.run(
        command, env={**os.environ, "LOG_LEVEL": "LOUD"}, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "LOG_LEVEL must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL', got 'LOUD'." in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("settings", SERVICES)
@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_value_means_the_default(environment, settings, blank):
    defaults = settings().model_dump()
    for variable in settings.variables():
        environment.setenv(variable, blank)
    assert settings().model_dump() == defaults


def test_values_lose_their_surrounding_spaces_and_choices_their_case(environment, tmp_path):
    environment.setenv("BIND_HOST", " 127.0.0.1 ")
    environment.setenv("DB_POOL_SIZE", " 7 ")
    environment.setenv("AUTH_MODE", "ON")
    environment.setenv("API_KEYS_FILE", str(tmp_path / "keys.json"))
    environment.setenv("COLLECT_SWEEP", "Never")
    settings = DataCollectorSettings()
    assert (settings.BIND_HOST, settings.DB_POOL_SIZE) == ("127.0.0.1", 7)
    assert (settings.AUTH_MODE, settings.COLLECT_SWEEP) == ("on", "never")


def test_each_service_reads_its_own_names_and_not_the_others(environment):
    environment.setenv("USER_MANAGER_HTTP_PORT", "6001")
    environment.setenv("DATA_COLLECTOR_GRPC_PORT", "6052")
    environment.setenv("HTTP_PORT", "7000")
    user_manager, data_collector = UserManagerSettings(), DataCollectorSettings()
    assert (user_manager.HTTP_PORT, user_manager.GRPC_PORT) == (6001, 50051)
    assert (data_collector.HTTP_PORT, data_collector.GRPC_PORT) == (5002, 6052)
    assert UserManagerSettings.DATABASE_URL_VARIABLE == "USER_MANAGER_DATABASE_URL"
    assert (
        DataCollectorSettings.MIGRATION_DATABASE_URL_VARIABLE
        == "DATA_COLLECTOR_MIGRATION_DATABASE_URL"
    )
    assert UserManagerSettings.PUBLIC_URL_VARIABLE == "USER_MANAGER_PUBLIC_URL"


def test_database_urls_are_pinned_to_psycopg2_and_migrations_default_to_the_serving_one(
    environment,
):
    environment.setenv("USER_MANAGER_DATABASE_URL", "postgres://app:pw@db:5432/users")
    settings = UserManagerSettings()
    assert settings.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg2://app:pw@db:5432/users"
    assert settings.MIGRATION_DATABASE_URL == settings.SQLALCHEMY_DATABASE_URI
    environment.setenv("USER_MANAGER_MIGRATION_DATABASE_URL", "postgresql://owner:pw@db/users")
    assert UserManagerSettings().MIGRATION_DATABASE_URL == "postgresql+psycopg2://owner:pw@db/users"
    assert "pw@" not in repr(UserManagerSettings())


def test_a_setting_may_come_from_the_file_its_file_variable_names(environment, tmp_path):
    """As an orchestrator mounts secrets: one file per value, often with a final newline."""
    url, token, pool = tmp_path / "url", tmp_path / "token", tmp_path / "pool"
    url.write_text("postgresql://app:s3cret@db:5432/users\n")
    token.write_text("grpc-token-from-a-file")
    pool.write_text("7\n")
    environment.setenv("USER_MANAGER_DATABASE_URL_FILE", str(url))
    environment.setenv("GRPC_AUTH_TOKEN_FILE", str(token))
    environment.setenv("DB_POOL_SIZE_FILE", str(pool))
    settings = UserManagerSettings()
    assert settings.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg2://app:s3cret@db:5432/users"
    assert settings.MIGRATION_DATABASE_URL == settings.SQLALCHEMY_DATABASE_URI
    assert settings.GRPC_SECURITY.token == "grpc-token-from-a-file"
    assert settings.DB_POOL_SIZE == 7
    assert "s3cret" not in repr(settings)
    # A value of the file is checked as the variable's would be, and named after it.
    pool.write_text("many")
    with pytest.raises(ConfigError, match=r"^DB_POOL_SIZE must be a whole number, got 'many'"):
        UserManagerSettings()


def test_a_setting_given_twice_or_from_a_file_that_cannot_be_read_is_refused(environment, tmp_path):
    token = tmp_path / "token"
    token.write_text("from-the-file")
    environment.setenv("GRPC_AUTH_TOKEN_FILE", str(token))
    environment.setenv("GRPC_AUTH_TOKEN", "from-the-environment")
    with pytest.raises(ConfigError, match="GRPC_AUTH_TOKEN and GRPC_AUTH_TOKEN_FILE are both set"):
        UserManagerSettings()
    # Blank is unset, as everywhere: the file's value stands.
    environment.setenv("GRPC_AUTH_TOKEN", " ")
    assert UserManagerSettings().GRPC_SECURITY.token == "from-the-file"
    environment.setenv("GRPC_AUTH_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as refused:
        UserManagerSettings()
    assert str(refused.value) == (
        f"GRPC_AUTH_TOKEN_FILE: cannot read {tmp_path / 'missing'} (No such file or directory)."
    )


def test_grpc_listens_where_rest_does_unless_told(environment):
    environment.setenv("BIND_HOST", "10.0.0.5")
    assert UserManagerSettings().GRPC_BIND_HOST == "10.0.0.5"
    environment.setenv("GRPC_BIND_HOST", "127.0.0.1")
    assert UserManagerSettings().GRPC_BIND_HOST == "127.0.0.1"


def test_the_opensky_url_loses_its_trailing_slash(environment):
    environment.setenv("OPENSKY_API_URL", "http://127.0.0.1:5003/api/")
    assert DataCollectorSettings().OPENSKY_API_URL == "http://127.0.0.1:5003/api"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {"RETENTION_DAYS": "7", "COLLECT_BACKFILL_DAYS": "7"},
            "RETENTION_DAYS must exceed COLLECT_BACKFILL_DAYS",
        ),
        (
            {"COLLECT_RETRY_FIRST_SECONDS": "120", "COLLECT_RETRY_MAX_SECONDS": "90"},
            "COLLECT_RETRY_MAX_SECONDS (90) must be at least COLLECT_RETRY_FIRST_SECONDS (120)",
        ),
        (
            {"COLLECT_INTERVAL_MINUTES": "30", "COLLECT_MIN_GAP_MINUTES": "45"},
            "COLLECT_MIN_GAP_MINUTES (45) must not exceed COLLECT_INTERVAL_MINUTES (30)",
        ),
        (
            {"JWT_JWKS_URL": "https://idp.example/jwks", "JWT_ISSUER": "https://idp.example"},
            "JWT_JWKS_URL needs JWT_ISSUER and JWT_AUDIENCE too.",
        ),
        ({"AUTH_MODE": "on"}, "AUTH_MODE=on needs API_KEYS_FILE or JWT_JWKS_URL"),
    ],
)
def test_settings_that_contradict_each_other_are_refused_naming_them(environment, variables, named):
    for variable, value in variables.items():
        environment.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        DataCollectorSettings()
    assert str(refused.value).startswith(named)


def test_settings_that_agree_are_kept(environment):
    environment.setenv("RETENTION_DAYS", "8")
    environment.setenv("COLLECT_BACKFILL_DAYS", "7")
    environment.setenv("COLLECT_RETRY_FIRST_SECONDS", "90")
    environment.setenv("COLLECT_RETRY_MAX_SECONDS", "90")
    environment.setenv("JWT_JWKS_URL", "https://idp.example/jwks")
    environment.setenv("JWT_ISSUER", "https://idp.example")
    environment.setenv("JWT_AUDIENCE", "flight-tracker")
    settings = DataCollectorSettings()
    assert (settings.RETENTION_DAYS, settings.COLLECT_RETRY_MAX_SECONDS) == (8, 90.0)
    assert settings.JWT_AUDIENCE == "flight-tracker"


class SlaBreachSettings(ServiceSettings):
    """A service added later: its name, its ports and one setting of its own."""

    model_config = named_after("SLA_BREACH_DETECTOR", http_port=5010)

    # Breaches are minutes apart; a check a minute finds one within a minute.
    SLA_CHECK_SECONDS: float = Field(60.0, ge=1)


def test_a_new_service_adds_a_class_and_one_line_per_setting(environment):
    environment.setenv("SLA_BREACH_DETECTOR_DATABASE_URL", "postgresql://sla@db/sla")
    environment.setenv("SLA_CHECK_SECONDS", "30")
    settings = SlaBreachSettings()
    assert (settings.HTTP_PORT, settings.SLA_CHECK_SECONDS) == (5010, 30.0)
    assert (
        settings.GRPC_PORT is None and "SLA_BREACH_DETECTOR_GRPC_PORT" not in settings.variables()
    )
    assert settings.MIGRATION_DATABASE_URL == "postgresql+psycopg2://sla@db/sla"
    assert SlaBreachSettings.DATABASE_URL_VARIABLE == "SLA_BREACH_DETECTOR_DATABASE_URL"
    environment.setenv("SLA_CHECK_SECONDS", "0")
    with pytest.raises(ConfigError, match=r"^SLA_CHECK_SECONDS must be at least 1, got '0'\.$"):
        SlaBreachSettings()


def test_a_service_that_does_not_name_its_variables_is_stopped_at_import():
    with pytest.raises(TypeError, match="named_after"):

        class Unnamed(ServiceSettings):
            HTTP_PORT: Port = 5010
            GRPC_PORT: Port = 50060


def test_gunicorn_s_master_does_not_load_pydantic():
    """The master loads only gunicorn's config; pydantic-settings would add ~13 MB to it."""
    script = "import sys, common.web.gunicorn_conf; print('pydantic' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False"
