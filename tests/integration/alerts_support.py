"""The alerts pipeline under test: its stack, the collector's side played by the test, probes.

The stack runs the Alert System and the Alert Notifier (real processes, with
PostgreSQL and nats-server); the SMTP server is in the test process
(tests.smtp_server). The test stands in for the Data Collector: it
publishes ``to-alert-system`` events through the broker, in the exact shape
the collector sends, and reads what comes back on ``to-data-collector``
from the stream itself.

Every test uses interest ids and recipients of its own, so tests share one
stack per module without seeing each other's emails.
"""

import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import psutil
import psycopg2
import requests

from common.broker.connection import Broker, Message
from common.broker.messages import content_id
from common.broker.streams import TO_ALERT_SYSTEM, stream_of
from common.timeutil import isoformat_utc
from devstack.stack import LocalStack, StackSettings, free_port, run_sql
from tests.smtp_server import SmtpTestServer
from tests.utils import Api, metric_value, stop_process, wait_until

ALERT_SERVICES = ("alert_system", "alert_notifier")
ALERTS_TEST_ENV = {
    # A worker killed mid-batch delays its messages by this (30 s in production).
    "CONSUMER_ACK_WAIT_SECONDS": "2",
    # Retries after 0.2 s, 0.4 s, 0.8 s, then every second (1 s ... 60 s in production): the
    # same mechanism, in seconds.
    "CONSUMER_RETRY_FIRST_SECONDS": "0.2",
    "CONSUMER_RETRY_MAX_SECONDS": "1",
    # Tests hold an email at DATA to catch the notifier mid-batch: it must not give up on it
    # meanwhile, however long the test's next steps take on a loaded machine (10 s in
    # production). A stopped server refuses connections at once, whatever this is.
    "SMTP_TIMEOUT_SECONDS": "60",
    # Tests hold a lock to catch a worker mid-batch: it must wait, not give up.
    "DB_LOCK_TIMEOUT_MS": "30000",
    "WEB_CONCURRENCY": "1",
    "ALERT_EMAIL_FROM": "Flight Tracker <alerts@tracker.example>",
}
# Long enough for a loaded machine; each hop takes milliseconds when idle.
PIPELINE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Interest:
    """A user's interest in an airport with thresholds, as the collector lists followers."""

    id: int
    email: str
    high_value: int | None = None
    low_value: int | None = None

    def follower(self, **thresholds) -> dict:
        """The follower entry of a flights event (``thresholds`` overrides this one's)."""
        entry = {
            "interest_id": self.id,
            "email": self.email,
            "high_value": self.high_value,
            "low_value": self.low_value,
        }
        entry.update(thresholds)
        return entry


def new_interest(prefix: str = "user", *, high: int | None = None, low: int | None = None):
    """Return an interest no other test uses: its own id and email."""
    return Interest(
        id=uuid.uuid4().int % 10**12,
        email=f"{prefix}.{uuid.uuid4().hex[:10]}@example.com",
        high_value=high,
        low_value=low,
    )


def flights_event(
    airport: str,
    flights: int,
    followers: list[dict],
    *,
    day: date = date(2026, 12, 5),
    committed_at: datetime | None = None,
) -> dict:
    """Return a ``flights`` event: the airport's figure over the whole UTC day ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    arrivals = flights // 2
    return {
        "kind": "flights",
        "airport": airport,
        "window": {
            "start": isoformat_utc(start),
            "end": isoformat_utc(start + timedelta(days=1)),
        },
        "arrivals": arrivals,
        "departures": flights - arrivals,
        "flights": flights,
        "followers": followers,
        "part": 1,
        "parts": 1,
        "committed_at": isoformat_utc(committed_at or datetime.now(UTC)),
    }


def removed_event(*interests: Interest) -> dict:
    """Return a ``removed`` event for ``interests``."""
    return {"kind": "removed", "interest_ids": [interest.id for interest in interests]}


def stream_payloads(broker: Broker, subject: str) -> list[dict]:
    """Every payload the broker keeps on ``subject``, oldest first."""
    from nats.js.errors import NotFoundError

    name = stream_of(subject).name

    async def read(js):
        info = await js.stream_info(name)
        payloads = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                message = await js.get_msg(name, sequence)
            except NotFoundError:
                continue
            if message.subject == subject:
                payloads.append(json.loads(message.data))
        return payloads

    return broker.call(read, timeout=30)


@dataclass
class AlertsStack:
    """The alert services, their broker and database, and the test's SMTP server."""

    stack: LocalStack
    smtp: SmtpTestServer
    broker: Broker
    replicas: list = field(default_factory=list)

    @property
    def alert_system(self) -> Api:
        return Api(self.stack.alert_system_url)

    @property
    def notifier(self) -> Api:
        return Api(self.stack.alert_notifier_url)

    def publish(self, *events: dict) -> None:
        """Publish events on ``to-alert-system`` as the collector does (ids from the content)."""
        for event in events:
            self.broker.publish(Message(TO_ALERT_SYSTEM, content_id(event["kind"], event), event))

    def publish_raw(self, subject: str, payload: dict, msg_id: str | None = None) -> None:
        """Publish any payload on any subject (a malformed message, an SLA breach)."""
        self.broker.publish(Message(subject, msg_id or str(uuid.uuid4()), payload))

    def sql(self, package: str, statement: str, params: tuple = ()) -> list[tuple]:
        """Run a statement on a service's database as its owner."""
        variable = f"{package.upper()}_DATABASE_URL"
        return run_sql(self.stack.database_urls[variable], statement, params)

    def state(self, interest: Interest) -> tuple | None:
        """The Alert System's (condition, version) of an interest, None if it has none."""
        rows = self.sql(
            "alert_system",
            "SELECT condition, version FROM alert_states WHERE interest_id = %s",
            (interest.id,),
        )
        return rows[0] if rows else None

    def settled(self) -> bool:
        """Tell whether every published event went all the way: evaluated, relayed, mailed."""
        for subject, durable, package in (
            ("to-alert-system", "alert_system", "alert_system"),
            ("to-notifier", "alert_notifier", "alert_notifier"),
        ):
            lag = self.broker.consumer_lag(stream_of(subject).name, durable)
            if lag is None or lag["pending"] or lag["unacknowledged"]:
                return False
            if self.sql(package, "SELECT count(*) FROM broker_outbox")[0][0]:
                return False
        return True

    def wait_settled(self, timeout: float = PIPELINE_TIMEOUT) -> None:
        """Wait until every published event went all the way (emails included)."""
        wait_until(self.settled, timeout=timeout, interval=0.1)

    def wait_for_emails(self, expected: dict[str, int], timeout: float = PIPELINE_TIMEOUT):
        """Wait until each recipient got at least its expected number of emails."""
        wait_until(
            lambda: all(self.smtp.counts()[who] >= n for who, n in expected.items()),
            timeout=timeout,
        )

    def stream(self, subject: str) -> list[dict]:
        """Every payload the broker keeps on ``subject``, oldest first."""
        return stream_payloads(self.broker, subject)

    def metric(self, api: Api, name: str, **labels: str) -> float:
        """One sample of a service's ``/metrics`` (0 when absent)."""
        return metric_value(api.get("/metrics").text, name, **labels) or 0.0

    def worker_of(self, package: str) -> psutil.Process:
        """The stack's process that runs ``package``'s worker role (consumers, relay)."""
        launcher = psutil.Process(self.stack.supervisor.children[package].pid)
        (worker,) = [p for p in launcher.children() if p.cmdline()[-1:] == ["worker"]]
        return worker

    def restart(self, package: str) -> None:
        """Start a service again after one of its processes died (as a container restart)."""
        self.stack.stop_service(package)
        self.stack.start_service(package)


class ServiceReplica:
    """Another process of a service on ports of its own: its web and worker roles.

    ``python -m <package> web worker``, as an orchestrator runs a replica (the
    migrations ran once, with the stack's). Started at once; :meth:`wait`
    returns when it answers, so several replicas start together.
    """

    def __init__(self, package: str, stack: LocalStack, log: Path):
        self.package = package
        self.port = free_port()
        self.log = log
        env = {
            **stack.env,
            f"{package.upper()}_HTTP_PORT": str(self.port),
            f"{package.upper()}_PUBLIC_URL": self.url,
        }
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", package, "web", "worker"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> Api:
        return Api(self.url)

    def wait(self) -> "ServiceReplica":
        """Return once it answers ``/ping`` (its worker starts beside it)."""
        wait_until(self._answers, timeout=90, interval=0.2)
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.package} replica exited:\n{self.log.read_text()}")
        try:
            return requests.get(f"{self.url}/ping", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        stop_process(self.process)


@contextmanager
def alerts_stack(
    *, services: tuple[str, ...] = ALERT_SERVICES, simulator: bool = False, **extra_env: str
) -> Iterator[AlertsStack]:
    """Start PostgreSQL, nats-server and both alert services, mailing a server in this process.

    ``services``: every service to start (the alert services, or the whole
    pipeline); ``simulator``: the OpenSky simulator too, for the collector.
    """
    smtp = SmtpTestServer()
    smtp.start()
    with tempfile.TemporaryDirectory(prefix="flight-tracker-alerts-") as tmp:
        settings = StackSettings.on_free_ports(
            Path(tmp) / "pg",
            services=services,
            simulator=simulator,
            log_dir=Path(tmp) / "logs",
            extra_env={
                **ALERTS_TEST_ENV,
                "SMTP_HOST": smtp.host,
                "SMTP_PORT": str(smtp.port),
                **extra_env,
            },
        )
        stack = LocalStack(settings)
        try:
            stack.start()
            yield AlertsStack(stack, smtp, Broker(stack.broker_url, name="alerts-test"))
        finally:
            stack.stop()
            smtp.stop()


class Tally(NamedTuple):
    """What the mail server got against what was expected: one email per recipient."""

    expected: int
    sent: int
    duplicates: int
    lost: int

    def __str__(self) -> str:
        return (
            f"emails expected {self.expected}, sent {self.sent}, "
            f"duplicates {self.duplicates}, lost {self.lost}"
        )


def tally(smtp: SmtpTestServer, interests: list[Interest], name: str) -> Tally:
    """Count the emails of ``interests`` (one each expected); print the figures under ``name``."""
    counts = smtp.counts()
    got = [counts[interest.email] for interest in interests]
    result = Tally(
        expected=len(interests),
        sent=sum(got),
        duplicates=sum(n - 1 for n in got if n > 1),
        lost=sum(1 for n in got if n == 0),
    )
    print(f"\nFIGURES {name}: {result}")
    return result


def lock_waits(alerts: AlertsStack, package: str) -> int:
    """How many of a service's database sessions wait for a lock now."""
    return alerts.sql(
        package,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        (package,),
    )[0][0]


@contextmanager
def holding_lock(alerts: AlertsStack, package: str, statement: str, params: tuple = ()):
    """Run ``statement`` (a LOCK or SELECT ... FOR UPDATE) in a transaction kept open meanwhile."""
    connection = psycopg2.connect(alerts.stack.database_urls[f"{package.upper()}_DATABASE_URL"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
        yield
    finally:
        connection.rollback()
        connection.close()
