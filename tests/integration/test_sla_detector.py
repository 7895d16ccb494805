"""The SLA breach detector on a real Prometheus: breaches, refusals, restarts, Prometheus down.

The monitored stack (tests/integration/conftest.py): Prometheus scrapes every
second, among its targets an exporter whose gauge the tests set; the
detector checks every 5 s (the shortest T_check that scrape interval allows).
Each test puts the configuration it needs through the API.
"""

import json
import subprocess
import sys
import time
import uuid

import pytest
import requests
from flask import Flask

from common.broker.connection import Broker
from common.broker.consumer import DONE, Consumer, Subscription
from common.broker.streams import SLA_BREACH
from devstack import prometheus
from tests.integration.conftest import TEST_GAUGE, MonitoredStack
from tests.utils import run_sql, wait_until

pytestmark = pytest.mark.local_stack

# A breach needs 3 checks out of range, its end 5 in range: at 5 s a check, with margin.
BREACH_TIMEOUT = 60


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def put_metrics(monitored: MonitoredStack, *metrics: dict) -> None:
    answer = monitored.sla.put("/sla/config", json={"metrics": list(metrics)})
    assert answer.status_code == 200, answer.text


def sla_health(monitored: MonitoredStack) -> dict:
    return monitored.sla.get("/health").json()


def checked(monitored: MonitoredStack, name: str) -> str | None:
    """Return the last outcome of ``name``'s check (None before its first)."""
    metric = sla_health(monitored)["sla"]["metrics"].get(name)
    return metric and metric["last_outcome"]


def wait_for_checks(monitored: MonitoredStack, count: int) -> None:
    """Wait until ``count`` more checks have started."""
    for _ in range(count):
        before = sla_health(monitored)["sla"]["last_check_at"]
        wait_until(
            lambda seen=before: sla_health(monitored)["sla"]["last_check_at"] != seen, timeout=20
        )


def emails_about(monitored: MonitoredStack, name: str) -> list[dict]:
    """Return the emails the local mail catcher caught about metric ``name``."""
    caught = requests.get(f"{monitored.stack.mail_catcher_url}messages", timeout=5).json()
    return [mail for mail in caught if f"SLA breach: {name} " in mail["subject"]]


def breaches_of(monitored: MonitoredStack, name: str) -> dict:
    answer = monitored.sla.get("/sla/breaches")
    assert answer.status_code == 200, answer.text
    return next(metric for metric in answer.json()["metrics"] if metric["name"] == name)


class BreachEvents:
    """Every event on ``sla-breach``, as the notifier's consumer would get them."""

    def __init__(self, monitored: MonitoredStack):
        self.seen = []
        self.consumer = Consumer(
            Flask("breach-events"),
            Broker(monitored.stack.broker_url, name="test-breach-events"),
            [Subscription(SLA_BREACH, unique("test-breaches"), self.handle)],
        )

    def handle(self, deliveries):
        self.seen.extend(deliveries)
        return [DONE] * len(deliveries)

    def of(self, metric: str) -> list[dict]:
        return [d.payload for d in self.seen if d.payload.get("metric") == metric]


@pytest.fixture
def breach_events(monitored_stack):
    events = BreachEvents(monitored_stack)
    events.consumer.start()
    yield events
    events.consumer.stop()


def test_a_gauge_out_of_range_gives_one_breach_event_and_email_until_it_is_back(
    monitored_stack, breach_events
):
    name = unique("test-gauge")
    query = f"max({TEST_GAUGE})"
    monitored_stack.gauge.set(5)
    put_metrics(monitored_stack, {"name": name, "query": query, "min": 0, "max": 10})
    wait_until(lambda: checked(monitored_stack, name) == "ok", timeout=20)

    out_of_range_at = time.monotonic()
    monitored_stack.gauge.set(50)
    events = wait_until(lambda: breach_events.of(name), timeout=BREACH_TIMEOUT)
    raised_after = time.monotonic() - out_of_range_at
    emails = wait_until(lambda: emails_about(monitored_stack, name), timeout=BREACH_TIMEOUT)
    emailed_after = time.monotonic() - out_of_range_at

    assert len(events) == 1
    event = events[0]
    assert event["kind"] == "sla-breach" and event["to"] == "sla-alerts@example.com"
    assert (event["metric"], event["query"]) == (name, query)
    assert (event["violated"], event["limit"], event["value"]) == ("max", 10, 50)
    assert (event["below"], event["above"]) == (0, 3)
    assert len(emails) == 1
    assert emails[0]["to"] == ["sla-alerts@example.com"]
    assert emails[0]["subject"] == f"SLA breach: {name} above its maximum (50, limit 10)"
    assert query in emails[0]["body"]
    # Still out of range at the next checks: the same breach, no new event.
    wait_for_checks(monitored_stack, 2)
    assert len(breach_events.of(name)) == 1
    shown = breaches_of(monitored_stack, name)
    assert shown["breaches"] == 1
    assert shown["last"]["breach_id"] == event["breach_id"]
    assert shown["last"]["ended_at"] is None
    assert sla_health(monitored_stack)["sla"]["open_breaches"] == 1

    back_at = time.monotonic()
    monitored_stack.gauge.set(5)
    ended = wait_until(
        lambda: breaches_of(monitored_stack, name)["last"]["ended_at"], timeout=BREACH_TIMEOUT
    )
    ended_after = time.monotonic() - back_at

    assert ended and len(breach_events.of(name)) == 1
    assert len(emails_about(monitored_stack, name)) == 1
    assert breaches_of(monitored_stack, name)["breaches"] == 1
    print(
        f"\nSLA breach: the gauge went out of range; the event was on sla-breach "
        f"{raised_after:.1f}s later (3 checks at 5 s, scrapes every 1 s), the email in the "
        f"mail catcher {emailed_after:.1f}s later; back in range, the breach ended "
        f"{ended_after:.1f}s later (5 checks in range).",
        flush=True,
    )


def probe(monitored: MonitoredStack, *parts: str) -> subprocess.CompletedProcess:
    """Run the detector's container probe with its environment."""
    return subprocess.run(
        [sys.executable, "-m", "sla_detector", "healthcheck", *parts],
        env=monitored.stack.service_env("sla_detector"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_its_probe_checks_what_it_runs_and_it_serves_no_grpc(monitored_stack):
    assert probe(monitored_stack).returncode == 0  # the web server: there is no gRPC
    ready = probe(monitored_stack, "web", "database", "worker")
    assert ready.returncode == 0, ready.stderr
    refused = probe(monitored_stack, "grpc")
    assert refused.returncode == 2
    assert "healthcheck [web] [database] [worker]" in refused.stderr


def test_a_check_interval_under_five_scrape_intervals_is_refused(monitored_stack):
    before = monitored_stack.sla.get("/sla/config").json()

    answer = monitored_stack.sla.put("/sla/config", json={"metrics": [], "check_seconds": 4})

    assert answer.status_code == 400
    assert answer.json()["details"] == {
        "check_seconds": "check_seconds (4) must be at least 5 x PROMETHEUS_SCRAPE_SECONDS (1) "
        "= 5: a check closer to the last one would compare samples Prometheus has not "
        "refreshed."
    }
    assert monitored_stack.sla.get("/sla/config").json() == before


@pytest.mark.parametrize(
    ("metric", "details"),
    [
        ({"name": "m", "query": "max(up", "max": 1}, "Prometheus refuses it: invalid parameter"),
        ({"name": "m", "query": "up[5m]", "max": 1}, "Prometheus refuses it: it gives a matrix"),
    ],
)
def test_a_query_prometheus_refuses_is_a_400_naming_it(monitored_stack, metric, details):
    answer = monitored_stack.sla.put("/sla/config", json={"metrics": [metric]})

    assert answer.status_code == 400
    assert answer.json()["details"]["metrics.0.query"].startswith(details)


@pytest.mark.parametrize(
    ("document", "field", "problem"),
    [
        ({"metrics": [], "check_seconds": 10**11}, "check_seconds", "less than or equal to 86400"),
        ({"metrics": [], "check_seconds": 2**70}, "check_seconds", "less than or equal to 86400"),
        (
            {"metrics": [{"name": "m", "query": "vector(1) # \x00", "max": 1}]},
            "metrics.0.query",
            "should match pattern",
        ),
    ],
)
def test_what_could_not_be_stored_or_kept_to_is_a_400_and_changes_nothing(
    monitored_stack, document, field, problem
):
    before = monitored_stack.sla.get("/sla/config").json()

    answer = monitored_stack.sla.put("/sla/config", json=document)

    assert answer.status_code == 400, answer.text
    assert problem in answer.json()["details"][field]
    assert monitored_stack.sla.get("/sla/config").json() == before


def test_an_infinite_value_is_above_every_maximum_and_shown_as_a_number(
    monitored_stack, breach_events
):
    name = unique("infinite")
    put_metrics(monitored_stack, {"name": name, "query": "vector(1) / 0", "max": 1})

    (event,) = wait_until(lambda: breach_events.of(name), timeout=BREACH_TIMEOUT)

    assert (event["violated"], event["limit"]) == ("max", 1)
    # Through PostgreSQL's JSONB, a number of 309 digits: the same float.
    assert float(event["value"]) == sys.float_info.max
    answer = monitored_stack.sla.get("/sla/breaches")

    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    shown = json.loads(answer.text, parse_constant=refuse)
    (metric,) = [metric for metric in shown["metrics"] if metric["name"] == name]
    assert metric["last"]["value"] == sys.float_info.max
    (email,) = wait_until(lambda: emails_about(monitored_stack, name), timeout=BREACH_TIMEOUT)
    assert email["subject"] == f"SLA breach: {name} above its maximum (1.79769e+308, limit 1)"


def test_the_configuration_survives_a_restart(monitored_stack):
    document = {
        "metrics": [{"name": unique("kept"), "query": "min(up)", "min": 1.0, "max": None}],
        "check_seconds": 5,
    }
    put_metrics(monitored_stack, *document["metrics"])
    # Put without a T_check of its own, it follows SLA_CHECK_SECONDS as set at each start.
    database = monitored_stack.stack.env["SLA_DETECTOR_DATABASE_URL"]
    stored = run_sql(database, "SELECT document->'check_seconds' FROM detector_state")
    assert stored == [(None,)]

    monitored_stack.stack.stop_service("sla_detector")
    monitored_stack.stack.start_service("sla_detector")

    assert monitored_stack.sla.get("/sla/config").json() == document
    # The file says otherwise; what was put through the API stays in force.
    assert sla_health(monitored_stack)["sla"]["configured_by"] == "api"
    wait_until(
        lambda: (
            "keeping the one set by PUT /sla/config"
            in monitored_stack.stack.log_text("sla_detector")
        )
    )


def test_a_query_that_matches_nothing_is_degraded_health_and_no_breach(monitored_stack):
    name = unique("nothing")
    put_metrics(monitored_stack, {"name": name, "query": "max(no_such_metric)", "max": 0})

    wait_until(lambda: checked(monitored_stack, name) == "no data", timeout=20)

    health = sla_health(monitored_stack)
    assert health["status"] == "degraded"
    assert health["prometheus"] == {
        "address": monitored_stack.prometheus_url,
        "status": "degraded",
        "without_sample": {name: "no data"},
    }
    assert breaches_of(monitored_stack, name)["breaches"] == 0
    assert f"SLA check of {name}: no data; no sample taken" in monitored_stack.stack.log_text(
        "sla_detector"
    )


def test_a_prometheus_that_is_down_is_degraded_health_not_a_crash_nor_a_breach(monitored_stack):
    stack = monitored_stack.stack
    name = unique("blind")
    monitored_stack.gauge.set(5)
    put_metrics(monitored_stack, {"name": name, "query": f"max({TEST_GAUGE})", "max": 10})
    wait_until(lambda: checked(monitored_stack, name) == "ok", timeout=20)
    stack.supervisor.stop("prometheus")
    try:
        monitored_stack.gauge.set(50)
        wait_for_checks(monitored_stack, 3)

        health = sla_health(monitored_stack)
        assert health["status"] == "degraded"
        assert health["prometheus"]["status"] == "unavailable"
        assert health["sla"]["metrics"][name]["last_outcome"].startswith("Prometheus unavailable")
        assert breaches_of(monitored_stack, name)["breaches"] == 0
        assert stack.supervisor.children["sla_detector"].poll() is None
        assert f"SLA check of {name}: Prometheus unavailable" in stack.log_text("sla_detector")
    finally:
        monitored_stack.gauge.set(5)
        prometheus.start(stack)
    wait_until(lambda: sla_health(monitored_stack)["status"] == "ok", timeout=30)
