"""Each service's launcher: its registry, its command line, its probes."""

import pytest

from common.process import launcher
from data_collector.__main__ import DATA_COLLECTOR
from devstack.stack import free_port
from user_manager.__main__ import USER_MANAGER

SERVICES = {"user_manager": USER_MANAGER, "data_collector": DATA_COLLECTOR}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_role_has_a_command_that_runs_its_module(name, monkeypatch):
    service = SERVICES[name]
    monkeypatch.setenv(f"{name.upper()}_HTTP_PORT", "6123")
    config = service.config()
    assert service.role_names == ["web", "grpc", "worker"]
    web = launcher.role_command(service, "web", config)
    assert web[1:3] == ["-m", "gunicorn"] and "0.0.0.0:6123" in web
    assert web[-1] == f"{name}.app:create_app(migrations=False)"
    for role, module in service.roles.items():
        assert launcher.role_command(service, role, config)[1:] == ["-m", module]
        __import__(module)  # the module exists


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
