"""Prometheus scrapes every service of a running stack, with a credential, and loads the rules.

The monitored stack (tests/integration/conftest.py), as an operator would run
it with authentication on: Prometheus started by the stack (Debian's package,
installed by the test setup when missing), scraping every second with an
``ops`` API key it reads from a file.
"""

import subprocess
import sys

import pytest
import requests

from devstack.stack import SERVICES, LocalStack
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack

# NODE_NAME of the monitored stack.
NODE = "test-node-1"
# Parts of each service's worker that beat a heartbeat (among others).
WORKER_PARTS = {
    "user_manager": {"outbox-relay", "idempotency-key-reaper"},
    "data_collector": {"collect", "requested"},
    "alert_system": {"consume:to-alert-system", "broker-outbox-relay"},
    "alert_notifier": {"consume:to-notifier", "consume:sla-breach", "broker-outbox-relay"},
    "sla_detector": {"sla-check", "broker-outbox-relay"},
}


@pytest.fixture
def monitored(monitored_stack) -> LocalStack:
    """The monitored stack's processes."""
    return monitored_stack.stack


def query(stack: LocalStack, promql: str) -> list[dict]:
    """Return the instant vector Prometheus answers to ``promql``."""
    answer = requests.get(
        f"{stack.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


def test_prometheus_scrapes_every_service_with_its_key_and_every_sample_is_labelled(monitored):
    def scraped():
        return {series["metric"]["job"] for series in query(monitored, "up == 1")}

    wait_until(lambda: scraped() >= set(SERVICES), timeout=30)

    # The labels the services add, on every series of every service (not those Prometheus
    # makes itself: up, scrape_*, and ALERTS of the rules).
    services_series = '{job=~".+", job!="test_exporter", __name__!~"up|scrape_.*|ALERTS.*"}'
    identities = query(monitored, f"count by (job, service, node) ({services_series})")
    labels = {
        (s["metric"]["job"], s["metric"].get("service"), s["metric"].get("node"))
        for s in identities
    }
    assert labels == {(package, package, NODE) for package in SERVICES}


def test_the_alerting_rules_are_loaded_and_evaluate_without_errors(monitored):
    def evaluated_rules():
        answer = requests.get(f"{monitored.prometheus_url}/api/v1/rules", timeout=5).json()
        rules = [rule for group in answer["data"]["groups"] for rule in group["rules"]]
        return rules if all(rule["lastEvaluation"] > "2000" for rule in rules) else None

    rules = wait_until(evaluated_rules, timeout=30)

    assert {rule["name"] for rule in rules} >= {"HighErrorRate", "WorkerStalled", "TargetDown"}
    assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []


@pytest.mark.parametrize("package", SERVICES)
def test_each_worker_part_beats_and_its_probe_passes(monitored, package):
    def parts():
        series = query(monitored, f'worker_last_progress_timestamp_seconds{{service="{package}"}}')
        return {s["metric"]["part"] for s in series}

    beating = wait_until(parts, timeout=30)

    assert beating >= WORKER_PARTS[package]
    probe = subprocess.run(
        [sys.executable, "-m", package, "healthcheck", "worker"],
        env=monitored.service_env(package),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
