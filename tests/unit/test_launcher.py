"""Each service's launcher: its registry, its command line, its probes."""

import pytest

from common.process import launcher
from data_collector.app import SERVICE as DATA_COLLECTOR
from devstack.stack import free_port
from user_manager.app import SERVICE as USER_MANAGER

SERVICES = {"user_manager": USER_MANAGER, "data_collector": DATA_COLLECTOR}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_web_is_gunicorn_and_the_other_roles_share_one_process(name, monkeypatch):
    service = SERVICES[name]
    monkeypatch.setenv(f"{name.upper()}_HTTP_PORT", "6123")
    config = service.settings_class()
    assert service.role_names == ["web", "grpc", "worker"]
    web = launcher.web_command(service, config)
    assert web[1:3] == ["-m", "gunicorn"] and "0.0.0.0:6123" in web
    assert web[-1] == f"{name}.app:create_app()"
    threaded = launcher.roles_command(service, ["grpc", "worker"])
    assert threaded[1:] == ["-m", name, "grpc", "worker"]


@pytest.mark.parametrize("args", [["bogus"], ["migrate", "web"], ["healthcheck", "db"]])
def test_a_wrong_command_line_says_how_to_call_it(args, capsys):
    assert launcher.main(USER_MANAGER, args) == 2
    assert "usage: python -m user_manager" in capsys.readouterr().err


@pytest.mark.parametrize("half", ["web", "grpc"])
def test_the_healthcheck_fails_saying_why_when_nothing_listens(half, monkeypatch, capsys):
    monkeypatch.setenv("BIND_HOST", "127.0.0.1")
    monkeypatch.setenv("DATA_COLLECTOR_HTTP_PORT", str(free_port()))
    monkeypatch.setenv("DATA_COLLECTOR_GRPC_PORT", str(free_port()))
    assert launcher.main(DATA_COLLECTOR, ["healthcheck", half]) == 1
    assert "data_collector is unhealthy" in capsys.readouterr().err


def test_web_workers_default_to_one_per_two_cores(monkeypatch):
    import os

    from user_manager.config import Settings

    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert max(1, (os.cpu_count() or 2) // 2) == Settings().WEB_WORKERS
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert Settings().WEB_WORKERS == 3


def test_a_role_that_cannot_start_stops_the_process_with_an_error(monkeypatch):
    class Refusing:
        def start(self):
            raise RuntimeError("cannot bind")

        def stop(self):
            raise AssertionError("never started, never stopped")

    stopped = []

    class Fine:
        def start(self):
            pass

        def stop(self):
            stopped.append(True)

    roles = {"grpc": Fine, "worker": Refusing}
    monkeypatch.setattr(type(USER_MANAGER), "build_role", lambda _self, role: roles[role]())
    service = USER_MANAGER
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/launcher-test-metrics")
    # This process is pytest's: keep its own signal handlers.
    monkeypatch.setattr(launcher.Supervisor, "install_signal_handlers", lambda _self: None)
    assert launcher.main(service, ["grpc", "worker"]) == 1
    assert stopped == [True]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_serving_roles_get_neither_the_owner_s_url_nor_its_file(name):
    service = SERVICES[name]
    variable = f"{name.upper()}_MIGRATION_DATABASE_URL"
    given = {
        variable: "postgresql://owner:pw@db/x",
        f"{variable}_FILE": "/run/secrets/migration-url",
        f"{name.upper()}_DATABASE_URL_FILE": "/run/secrets/url",
        "LOG_LEVEL": "INFO",
    }
    assert launcher.serving_environment(service, given) == {
        f"{name.upper()}_DATABASE_URL_FILE": "/run/secrets/url",
        "LOG_LEVEL": "INFO",
    }
