"""The gRPC security settings: all or none of the TLS files, a sendable token, a bind address."""

import pytest

from common.settings import ConfigError, GrpcSecurity
from tests.utils import write_test_certificates
from user_manager.config import Settings as Config

TLS = ("GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA")


@pytest.fixture
def environment(monkeypatch):
    monkeypatch.setenv("USER_MANAGER_DATABASE_URL", "postgresql://u:p@db:5432/d")
    for variable in (*TLS, "GRPC_AUTH_TOKEN", "GRPC_BIND_HOST", "BIND_HOST"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_unset_means_plaintext_without_a_token_on_the_rest_address(environment):
    environment.setenv("BIND_HOST", "10.0.0.5")
    config = Config()
    assert GrpcSecurity() == config.GRPC_SECURITY
    assert not config.GRPC_SECURITY.tls and config.GRPC_SECURITY.metadata == ()
    assert config.GRPC_BIND_HOST == "10.0.0.5"
    environment.setenv("GRPC_BIND_HOST", "127.0.0.1")
    assert Config().GRPC_BIND_HOST == "127.0.0.1"


@pytest.mark.parametrize("given", [("GRPC_TLS_CERT",), ("GRPC_TLS_CERT", "GRPC_TLS_KEY"), TLS[1:]])
def test_a_partial_tls_set_fails_at_start_naming_what_is_missing(environment, tmp_path, given):
    files = write_test_certificates(tmp_path)
    for variable in given:
        environment.setenv(variable, files[variable])
    with pytest.raises(ConfigError) as error:
        Config()
    missing = str(error.value).split(" set but ")[1].split(" not:")[0]
    assert sorted(missing.split(" and ")) == sorted(set(TLS) - set(given)), error.value


def test_all_three_files_turn_mutual_tls_on(environment, tmp_path):
    for variable, path in write_test_certificates(tmp_path).items():
        environment.setenv(variable, path)
    environment.setenv("GRPC_AUTH_TOKEN", "a-long-random-token")
    security = Config().GRPC_SECURITY
    assert security.tls and b"PRIVATE KEY" in security.private_key
    assert security.metadata == (("authorization", "Bearer a-long-random-token"),)
    assert "a-long-random-token" not in repr(security) and "PRIVATE" not in repr(security)


def test_an_unreadable_or_non_pem_file_is_named(environment, tmp_path):
    files = write_test_certificates(tmp_path)
    for variable, path in files.items():
        environment.setenv(variable, path)
    environment.setenv("GRPC_TLS_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="GRPC_TLS_CA: cannot read"):
        Config()
    (tmp_path / "junk.pem").write_text("not a certificate")
    environment.setenv("GRPC_TLS_CA", str(tmp_path / "junk.pem"))
    with pytest.raises(ConfigError, match=r"GRPC_TLS_CA: .* is not a PEM file"):
        Config()


@pytest.mark.parametrize("token", ["two words", "tab\there", "caf\u00e9"])
def test_a_token_that_cannot_travel_as_metadata_is_refused(environment, token):
    environment.setenv("GRPC_AUTH_TOKEN", token)
    with pytest.raises(ConfigError, match="GRPC_AUTH_TOKEN"):
        Config()


def test_a_reachable_grpc_server_without_a_token_is_announced(environment):
    environment.setenv("BIND_HOST", "0.0.0.0")
    (warning,) = Config().security_warnings()
    assert "GRPC_AUTH_TOKEN is not set" in warning and "0.0.0.0" in warning
    environment.setenv("GRPC_AUTH_TOKEN", "a-long-random-token")
    assert Config().security_warnings() == []
    environment.delenv("GRPC_AUTH_TOKEN")
    environment.setenv("GRPC_BIND_HOST", "127.0.0.1")
    assert Config().security_warnings() == []
