"""Two Data Collector deployments on one database never ask OpenSky at the same time."""

import itertools
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from data_collector.collection.lock import COLLECTION_LOCK_ID
from devstack.stack import free_port
from tests.integration.collector_support import assert_complete, sample_dataset
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack


@pytest.fixture
def second_collector(collector, tmp_path):
    """Another ``python -m data_collector`` (web, gRPC, worker) on other ports, same database."""
    port = free_port()
    env = dict(
        collector.stack.env,
        DATA_COLLECTOR_HTTP_PORT=str(port),
        DATA_COLLECTOR_GRPC_PORT=str(free_port()),
    )
    log_path = tmp_path / "second_collector.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "data_collector"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers():
            assert process.poll() is None, log_path.read_text()
            try:
                return requests.get(f"{url}/ping", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(answers, timeout=60)
        yield url, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_two_collectors_on_one_database_take_turns(collector, second_collector):
    url, log_path = second_collector
    flights = sample_dataset()
    collector.sim.load_dataset(flights)
    # Every answer takes a while, so both workers try to collect while a cycle runs.
    collector.sim.inject([{"kind": "timeout", "seconds": 0.3}] * 12)
    airports = ("LIRF", "LIMC", "EGLL", "LIPZ")
    log_start = log_path.stat().st_size

    def second_turned_away():
        return b"another process is collecting" in log_path.read_bytes()[log_start:]

    with collector.paused():
        collector.follow_without_waiting(*airports)
        for _ in range(3):
            assert requests.post(f"{url}/collection/runs", timeout=5).status_code == 202
            assert collector.dc.post("/collection/runs").status_code == 202
        # The second collector's worker sees the request and respects the lock.
        wait_until(second_turned_away, timeout=10)

    def all_collected():
        days = collector.sql("SELECT count(*) FROM collected_days")[0][0]
        pending = collector.sql("SELECT count(*) FROM collection_requests")[0][0]
        return days == len(airports) * 2 * 3 and pending == 0

    wait_until(all_collected, timeout=60)
    calls = sorted(collector.flight_calls(), key=lambda c: c["started_at"])
    for before, after in itertools.pairwise(calls):
        assert after["started_at"] >= before["finished_at"], (before, after)
    # Between them they asked once for each range: per airport and direction, the
    # two past days and today. A second cycle repeating the first would show here.
    # A 401 is not an answer: the simulator's reset before this test revoked the
    # token the worker held, so its first request may be refused and renewed.
    answered = [c for c in calls if c["status"] != 401]
    assert len(answered) == len(airports) * 2 * 2, calls
    assert_complete(collector, flights, airports=airports)


def test_the_lock_holder_is_not_left_idle_in_a_transaction(collector):
    """A managed PostgreSQL's idle_in_transaction_session_timeout must not drop the lock."""
    collector.sim.load_dataset(sample_dataset())
    collector.sim.inject([{"kind": "timeout", "seconds": 0.5}] * 4)
    asked_at = time.time()
    collector.follow_without_waiting("LIRF")

    def lock_holder_between_statements():
        rows = collector.sql(
            "SELECT a.state, a.xact_start FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted",
            (COLLECTION_LOCK_ID,),
        )
        return [row for row in rows if row[0] != "active"]

    assert wait_until(lock_holder_between_statements, timeout=20, interval=0.05) == [("idle", None)]
    collector.wait_for_cycle(asked_at)
