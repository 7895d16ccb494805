"""A stack of its own for the collection tests: small backfill, fast retries, clean slate.

Collection tests change the simulator's world and need to know exactly which
airports are followed, so they get their own stack (PostgreSQL, both
services, simulator) instead of sharing the session one, and every test
starts from empty collector tables and a reset simulator.
"""

import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from data_collector.app import create_app
from data_collector.collection.lock import COLLECTION_LOCK_ID
from data_collector.models import db
from devstack.stack import GRPC_SERVICES, LocalStack, StackSettings, free_port
from opensky_sim.control import SimulatorControl
from tests.integration.alerts_support import alerts_stack
from tests.integration.auth_support import (
    AUDIENCE,
    ISSUER,
    ApiKeys,
    IdentityProvider,
    standard_keys,
)
from tests.integration.collector_support import DAY, Collector, sample_dataset
from tests.utils import Api, require_prometheus

COLLECTOR_TEST_ENV = {
    # Two past days and today: enough to see two-day requests, lead-in days and refreshes.
    "COLLECT_BACKFILL_DAYS": "2",
    "COLLECT_POLL_SECONDS": "0.2",
    "OPENSKY_RETRY_BACKOFF_SECONDS": "0.05",
    # The default, named here because tests inject that many failures to fail a range.
    "OPENSKY_MAX_ATTEMPTS": "4",
    # A failed range is asked for again after 2 s, then 4 s, ... (not 60 s).
    "COLLECT_RETRY_FIRST_SECONDS": "2",
    "COLLECT_RETRY_MAX_SECONDS": "8",
    # Injected timeouts sleep 3 s; the client gives up well before.
    "OPENSKY_TIMEOUT_SECONDS": "1",
    "WEB_CONCURRENCY": "2",
    # Short, so retention tests work with days close to the collected ones.
    "RETENTION_DAYS": "10",
    # Tests ask for cycle after cycle; the once-a-minute limit has a test of its own.
    "COLLECTION_RUN_MIN_INTERVAL_SECONDS": "0",
    # An open circuit breaker lets a trial call through after 2 s (a minute in production).
    "OPENSKY_BREAKER_COOLDOWN_SECONDS": "2",
}
# Longer than any collection test takes (a cycle waits at most CYCLE_TIMEOUT).
MIDNIGHT_MARGIN = 120
COLLECTOR_TABLES = (
    "user_interests, flight_data, collected_days, collection_requests, collection_retries, "
    "alert_windows"
)


@pytest.fixture(scope="session")
def collector_stack(stack):
    """A second local stack dedicated to collection tests (skipped against a remote stack)."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs a stack started by the suite")
    with tempfile.TemporaryDirectory(prefix="flight-tracker-collector-") as tmp:
        local = LocalStack(
            StackSettings.on_free_ports(
                Path(tmp) / "pg",
                simulator=True,
                services=GRPC_SERVICES,
                extra_env=COLLECTOR_TEST_ENV,
            )
        )
        try:
            local.start()
            yield local
        finally:
            local.stop()


def wipe_collector_tables(database_url: str) -> None:
    """Empty the collector's tables once no cycle is running (the cycle lock is waited for)."""
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (COLLECTION_LOCK_ID,))
            cursor.execute(f"TRUNCATE {COLLECTOR_TABLES}")
            cursor.execute(
                "UPDATE collector_state SET not_before = NULL, credits_remaining = NULL, "
                "last_cycle_started_at = NULL, last_cycle_finished_at = NULL, "
                "last_periodic_cycle_started_at = NULL, "
                "retention_ran_on = NULL, sweep_unreliable_since = NULL, "
                "credits_day = NULL, credits_spent = 0, over_budget_on = NULL, "
                "breaker_state = 'closed', breaker_failures = 0, breaker_opened_at = NULL"
            )
    finally:
        connection.close()


def wait_out_midnight() -> None:
    """Start no test in the last minutes of a UTC day: let the day change first.

    Tests build their data around today_start() while the worker and the
    simulator read the real clock; a test that straddled midnight would see
    the collected window move under it. Waiting (at most MIDNIGHT_MARGIN, and
    only near midnight) keeps every test within one UTC day.
    """
    left = DAY - time.time() % DAY
    if left < MIDNIGHT_MARGIN:
        time.sleep(left + 1)


@pytest.fixture
def collector(collector_stack) -> Iterator[Collector]:
    """The collection stack with nothing followed, stored or injected."""
    wait_out_midnight()
    sim = SimulatorControl(collector_stack.simulator_url)
    sim.clear_failures()
    wipe_collector_tables(collector_stack.database_urls["DATA_COLLECTOR_DATABASE_URL"])
    sim.reset()
    collector = Collector(collector_stack, sim)
    yield collector
    collector.close()


@pytest.fixture
def flights(collector) -> list[dict]:
    """The sample dataset (collector_support.sample_dataset), loaded into the simulator."""
    dataset = sample_dataset()
    collector.sim.load_dataset(dataset)
    return dataset


@pytest.fixture
def collector_app(collector, monkeypatch):
    """The Data Collector app in this process, on the collection stack's database and simulator.

    For checks at the level of one function against the real database (the
    stack's own worker runs beside it; the collection lock keeps them apart).
    """
    for name, value in collector.stack.env.items():
        monkeypatch.setenv(name, value)
    # As the owner, like the tests' own SQL: some checks ANALYZE what they insert.
    variable = "DATA_COLLECTOR_DATABASE_URL"
    monkeypatch.setenv(variable, collector.stack.database_urls[variable])
    app = create_app()
    with app.app_context():
        yield app
        db.session.remove()


@dataclass
class SecureStack:
    """A stack with AUTH_MODE=on: its processes, its API keys and its identity provider."""

    stack: LocalStack
    keys: ApiKeys
    idp: IdentityProvider

    @property
    def um(self) -> Api:
        return Api(self.stack.user_manager_url)

    @property
    def dc(self) -> Api:
        return Api(self.stack.data_collector_url)


@pytest.fixture(scope="session")
def secure_stack(stack):
    """A third local stack, with authentication on (skipped against a remote stack)."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs a stack started by the suite")
    idp = IdentityProvider()
    with tempfile.TemporaryDirectory(prefix="flight-tracker-secure-") as tmp:
        keys = standard_keys(Path(tmp) / "api-keys.json")
        local = LocalStack(
            StackSettings.on_free_ports(
                Path(tmp) / "pg",
                simulator=True,
                services=GRPC_SERVICES,
                log_dir=Path(tmp) / "logs",
                extra_env={
                    "AUTH_MODE": "on",
                    "API_KEYS_FILE": str(keys.path),
                    "JWT_JWKS_URL": idp.jwks_url,
                    "JWT_ISSUER": ISSUER,
                    "JWT_AUDIENCE": AUDIENCE,
                    "WEB_CONCURRENCY": "2",
                    "COLLECT_BACKFILL_DAYS": "1",
                },
            )
        )
        try:
            local.start()
            yield SecureStack(local, keys, idp)
        finally:
            local.stop()
            idp.close()


@dataclass
class MonitoredStack:
    """A stack watched by its own Prometheus, with an exporter whose gauge the tests set.

    Authentication is on, as an operator would run it: Prometheus presents an
    ``ops`` API key from a file; the tests call with ``keys``' ``all`` key.
    """

    stack: LocalStack
    keys: ApiKeys
    gauge: Gauge
    sla_config_file: Path

    @property
    def prometheus_url(self) -> str:
        return self.stack.prometheus_url

    @property
    def sla(self) -> Api:
        """The SLA detector's API, called with a key holding every scope."""
        api = Api(self.stack.url_of("sla_detector"))
        api.session.headers.update(self.keys.header("all"))
        return api


# What SLA_CONFIG_FILE says at start (the tests replace it through the API).
SLA_FILE = """\
metrics:
  - name: every-service-up
    query: min(up)
    min: 1
"""
# The exporter's gauge the tests drive in and out of range.
TEST_GAUGE = "sla_test_gauge"


@pytest.fixture(scope="session")
def monitored_stack(stack):
    """The stack with Prometheus (scraping every second), the SLA detector checking every 5 s."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs a stack started by the suite")
    require_prometheus()
    registry = CollectorRegistry()
    gauge = Gauge(TEST_GAUGE, "A gauge the tests set.", registry=registry)
    exporter_port = free_port()
    exporter, exporter_thread = start_http_server(exporter_port, "127.0.0.1", registry)
    with tempfile.TemporaryDirectory(prefix="flight-tracker-monitored-") as tmp:
        keys = standard_keys(Path(tmp) / "api-keys.json")
        # As an operator does: an ops key in the keys file, the key itself in a file for
        # Prometheus (its bearer token file).
        key_file = Path(tmp) / "prometheus-api-key"
        key_file.write_text(keys.add("prometheus", ["ops"]))
        sla_file = Path(tmp) / "sla.yml"
        sla_file.write_text(SLA_FILE)
        local = LocalStack(
            StackSettings.on_free_ports(
                Path(tmp) / "pg",
                simulator=True,
                log_dir=Path(tmp) / "logs",
                prometheus=True,
                prometheus_scrape_seconds=1,
                prometheus_extra_jobs={"test_exporter": f"127.0.0.1:{exporter_port}"},
                extra_env={
                    "AUTH_MODE": "on",
                    "API_KEYS_FILE": str(keys.path),
                    "PROMETHEUS_API_KEY_FILE": str(key_file),
                    "NODE_NAME": "test-node-1",
                    "SLA_CHECK_SECONDS": "5",
                    "SLA_CONFIG_FILE": str(sla_file),
                    "SLA_ALERT_EMAIL": "sla-alerts@example.com",
                    "WEB_CONCURRENCY": "1",
                    "COLLECT_BACKFILL_DAYS": "1",
                },
            )
        )
        try:
            local.start()
            yield MonitoredStack(local, keys, gauge, sla_file)
        finally:
            local.stop()
            exporter.shutdown()
            exporter_thread.join()


@pytest.fixture(scope="module")
def alerts():
    """The alert services on a stack of their own, one per module (its tests: local_stack)."""
    with alerts_stack() as started:
        yield started


@pytest.fixture
def scratch_database(local_stack):
    """A new database on the suite's server, as its superuser; dropped afterwards."""
    superuser = local_stack.admin_database_url("USER_MANAGER_DATABASE_URL")
    name = f"migration_probe_{uuid.uuid4().hex[:8]}"
    administer(superuser, f"CREATE DATABASE {name}")
    parts = urlsplit(superuser)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    administer(superuser, f"DROP DATABASE {name} WITH (FORCE)")


def administer(url: str, statement: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        connection.cursor().execute(statement)
    finally:
        connection.close()
