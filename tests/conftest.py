"""Fixtures: the stack under test, started here or given by UM_URL and DC_URL.

By default the suite starts its own stack (embedded PostgreSQL, both
services under gunicorn with their gRPC servers, the OpenSky simulator) on
free ports, once per session. With ``UM_URL`` and ``DC_URL`` set it targets
an already running stack instead (docker compose); tests that must stop or
crash processes are marked ``local_stack`` and skipped there.
"""

import os

# The suite's process uses gRPC (clients, in-process servers) and then forks: embedded
# PostgreSQL runs pg_ctl as another user, which subprocess can only do with fork(), not
# vfork(). grpcio's fork handlers then run in the child and crash it now and then (SIGSEGV
# before exec: "Epoll1Poller ... Bad file descriptor"), so a stack fails to start. The
# child execs at once and needs none of them: grpcio registers no handler when this is off.
# The services never fork once gRPC runs, so they need none either.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from devstack.stack import LocalStack, StackSettings
from tests.smtp_server import SmtpTestServer
from tests.utils import Api, AppClient

# Property-based tests (Hypothesis, and schemathesis on top of it) draw the same examples
# on every run, so that a failure in CI is one anybody can reproduce rather than a new
# draw; HYPOTHESIS_PROFILE=explore draws new examples each run, to look for more.
EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"
# No deadline: an example's time says how loaded the machine is, not whether it is right.
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile("explore" if EXPLORE else "repeatable")

# How make test's workers share the suite out (units of work, longest first).
pytest_plugins = ["tests.scheduling"]


class RemoteStack:
    """A stack someone else runs; only its URLs are known."""

    def __init__(
        self,
        user_manager_url: str,
        data_collector_url: str,
        simulator_url: str | None,
        sla_detector_url: str | None = None,
    ):
        self.user_manager_url = user_manager_url.rstrip("/")
        self.data_collector_url = data_collector_url.rstrip("/")
        self.simulator_url = simulator_url.rstrip("/") if simulator_url else None
        self.sla_detector_url = sla_detector_url.rstrip("/") if sla_detector_url else None


def _remote_stack() -> RemoteStack | None:
    um_url, dc_url = os.environ.get("UM_URL"), os.environ.get("DC_URL")
    if um_url and dc_url:
        return RemoteStack(um_url, dc_url, os.environ.get("SIM_URL"), os.environ.get("SLA_URL"))
    if um_url or dc_url:
        # Half a remote stack would silently test a local one instead.
        raise pytest.UsageError("set both UM_URL and DC_URL to test a running stack, or neither")
    return None


def pytest_configure(config):
    """Refuse a half-given remote stack before anything starts."""
    _remote_stack()


def pytest_collection_modifyitems(config, items):
    """Skip tests that need processes of their own when the stack is remote."""
    if _remote_stack() is None:
        return
    skip = pytest.mark.skip(reason="needs a stack started by the suite (UM_URL/DC_URL are set)")
    for item in items:
        if "local_stack" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stack():
    """The running stack: started for this session, or the remote one."""
    remote = _remote_stack()
    if remote is not None:
        yield remote
        return
    with tempfile.TemporaryDirectory(prefix="flight-tracker-test-") as tmp:
        settings = StackSettings.on_free_ports(
            Path(tmp) / "pg",
            simulator=True,
            log_dir=Path(tmp) / "logs",
            extra_env={
                # Test-only crash points (X-Fault-Inject); never set outside tests.
                "FAULT_INJECTION_ENABLED": "1",
                # Retry undelivered outbox calls within seconds, not minutes.
                "OUTBOX_RELAY_INTERVAL_SECONDS": "0.5",
                "OUTBOX_MAX_BACKOFF_SECONDS": "2",
                # One day of backfill: collection tests have a stack of their own.
                "COLLECT_BACKFILL_DAYS": "1",
                # Several workers per service, whatever this machine's cores: what must
                # work across processes is tested across processes.
                "WEB_CONCURRENCY": "2",
            },
        )
        local = LocalStack(settings)
        try:
            local.start()
            yield local
        finally:
            local.stop()


@pytest.fixture(scope="session")
def local_stack(stack):
    """The stack, when this suite started it (for tests that stop or crash its processes)."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs a stack started by the suite")
    return stack


@pytest.fixture
def um(stack) -> Api:
    """Client of the User Manager REST API."""
    return Api(stack.user_manager_url)


@pytest.fixture
def dc(stack) -> Api:
    """Client of the Data Collector REST API."""
    return Api(stack.data_collector_url)


@pytest.fixture(scope="session")
def um_app(local_stack):
    """The User Manager's Flask app in this process, on the suite's database."""
    from user_manager.app import create_app

    urls = local_stack.database_urls
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": urls["USER_MANAGER_DATABASE_URL"],
            "DATA_COLLECTOR_GRPC_ADDR": local_stack.env["DATA_COLLECTOR_GRPC_ADDR"],
        }
    )


@pytest.fixture(scope="session")
def dc_app(local_stack):
    """The Data Collector's Flask app in this process, on the suite's database."""
    from data_collector.app import create_app

    urls = local_stack.database_urls
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": urls["DATA_COLLECTOR_DATABASE_URL"],
            "USER_MANAGER_GRPC_ADDR": local_stack.env["USER_MANAGER_GRPC_ADDR"],
        }
    )


@pytest.fixture
def um_client(request, stack):
    """The User Manager's API for route-level tests: in this process, or over HTTP if remote.

    In-process (Flask's test client on the suite's real database) when the
    suite runs its own stack; against a remote stack, the same requests go
    over HTTP, so those tests still check the deployed services.
    """
    if not isinstance(stack, LocalStack):
        return Api(stack.user_manager_url)
    return AppClient(request.getfixturevalue("um_app"))


@pytest.fixture
def dc_client(request, stack):
    """The Data Collector's API for route-level tests (see :func:`um_client`)."""
    if not isinstance(stack, LocalStack):
        return Api(stack.data_collector_url)
    return AppClient(request.getfixturevalue("dc_app"))


@pytest.fixture
def smtp_server():
    """A real SMTP server in this process (aiosmtpd) on a free port, stopped after the test."""
    server = SmtpTestServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
