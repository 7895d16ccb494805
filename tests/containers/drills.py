"""``make test-containers``: the scaled compose stack on a real engine, the suite, the drills.

``python -m tests.containers.drills`` builds the images, starts docker-compose.yml
with ``--scale user-manager=3 --scale data-collector=3 --scale alert-system=2
--scale alert-notifier=2`` plus the OpenSky simulator as a container
(``deploy/compose/test-stack.yml``), on free host ports, waits until every
container is healthy, runs the integration suite through the gateway
(``UM_URL``, ``DC_URL``, ``SIM_URL``), then the fault drills below, and prints
a Markdown table of what each measured. The alerts pipeline's drills publish
``to-alert-system`` events themselves (from a collector container, with the
message models) and count the emails in the mail catcher. It always removes
the project (``down -v``). Without a Docker engine it says why and exits 0
having run nothing (CI has no engine).

The run shortens the collector's period to one minute
(``COLLECT_INTERVAL_MINUTES=1``, ``COLLECT_MIN_GAP_MINUTES=0``, so every
cycle has something new to fetch), backfills two days (the older one is then
settled: an alert window at once), runs two web workers per replica
(``WEB_CONCURRENCY=2``) and sets a gRPC token; every other setting is the
shipped default.
"""

import argparse
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from alert_notifier.config import Settings as NotifierSettings
from common.broker.messages import FlightsEvent, Follower, Window
from opensky_sim.control import SimulatorControl
from tests.containers.compose_stack import (
    ComposeError,
    ComposeStack,
    docker,
    engine_problem,
    versions,
    wait_for,
)
from tests.containers.deployment import REPO_ROOT, load_compose, migration_services
from tests.utils import Api, create_user, unique_email, user_payload

REPLICAS = 3
# Of each alert service: its replicas share one durable consumer per subject.
ALERT_REPLICAS = 2
# One collection period of one minute, and something new to fetch at every cycle.
PERIOD_SECONDS = 60
DRILL_SETTINGS = {
    "COLLECT_INTERVAL_MINUTES": str(PERIOD_SECONDS // 60),
    "COLLECT_MIN_GAP_MINUTES": "0",
    # Two days: the older one ended more than COLLECT_REFRESH_DAYS ago, so it is settled at
    # once and a followed airport has an alert window to compare with its thresholds.
    "COLLECT_BACKFILL_DAYS": "2",
    # Ten service containers share the machine: two web workers each (not four) keep
    # start-up and the drills' figures from being mostly CPU contention.
    "WEB_CONCURRENCY": "2",
}
SUITE = ["tests/integration", "tests/routes"]
# Tests that read one replica's counters: through the gateway, scrapes reach any replica.
SUITE_DESELECT = "not one_replica"
HTTP_TIMEOUT = 30
DUPLICATES = 50
CREATORS = 6
# How long a creating client keeps retrying one user before it gives up (and says so).
CREATE_GIVE_UP_SECONDS = 120
PERIODS_OBSERVED = 3
# Calls of one cycle come within a second or two; cycles are a period apart.
CYCLE_GAP_SECONDS = 15
# The worker skips a periodic cycle when one started within this share of the period.
PERIOD_SHARE = 0.9
INTERESTS_GONE_WITHIN_SECONDS = 30
# Long enough that the outbox's backoff grows past half a minute (1, 2, 4, ... 32 s).
COLLECTOR_OUTAGE_SECONDS = 60
SLOW_CLIENTS = 200
NORMAL_REQUESTS = 10
# A normal request through the gateway, with 200 slow clients hanging on it.
ANSWER_WITHIN_SECONDS = 3
NEW_REPLICA_WITHIN_SECONDS = 120
# The servers end connections after 60 s (a 10 s grace, some jitter): by then every channel
# has resolved the peer's name again.
CONNECTIONS_AGED_SECONDS = 80
FOLLOWS = 60
CHECK_SERVED = "UserService/CheckUserExists OK"
# Tells this run's made-up credentials from an earlier run's.
RUN_ID = uuid.uuid4().hex[:12]
# A line of the gateway's access log (log_format gateway).
UPSTREAM = re.compile(r"request_id=(?P<id>\S+) upstream=(?P<addresses>.*?) upstream_status=")


@dataclass
class DrillResult:
    """One row of the table: what was done, what was measured, and whether it held."""

    name: str
    setup: str
    figures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def check(self, condition: bool, problem: str) -> None:
        """Record ``problem`` unless ``condition`` holds."""
        if not condition:
            self.problems.append(problem)


def markdown_table(results: list[DrillResult]) -> str:
    """Render the drills' results as a Markdown table."""
    lines = ["| drill | what was done | figures | result |", "|---|---|---|---|"]
    for result in results:
        outcome = "pass" if result.passed else "FAIL: " + "; ".join(result.problems)
        cells = [result.name, result.setup, "; ".join(result.figures), outcome]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


# --- helpers ------------------------------------------------------------------------------


def tag() -> str:
    """A request-id prefix for one drill, to find its requests in the gateway's log."""
    return f"drill-{uuid.uuid4().hex[:8]}"


def container_addresses(stack: ComposeStack, service: str) -> dict[str, str]:
    """Map each replica's address on the services network (the gateway's) to its name."""
    network = f"{stack.project}_services"
    template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
    return {
        docker("inspect", "-f", template, container).strip(): stack.name_of(container)
        for container in stack.containers(service)
    }


def answered_by(log: str, prefix: str) -> Counter:
    """Count, in a gateway log, which replica address answered each request id with prefix."""
    served: Counter = Counter()
    for match in UPSTREAM.finditer(log):
        if match.group("id").startswith(prefix):
            # "a, b" when nginx tried several; the last one answered.
            served[match.group("addresses").split(",")[-1].strip().split(":")[0]] += 1
    return served


def upstreams(stack: ComposeStack, prefix: str) -> Counter:
    """Count which replica address answered each gateway request whose id starts with prefix."""
    (gateway,) = stack.containers("gateway")
    return answered_by(stack.logs(gateway), prefix)


def spread(stack: ComposeStack, service: str, prefix: str) -> list[int]:
    """How many of a drill's requests each current replica of ``service`` answered."""
    served = upstreams(stack, prefix)
    return [served.get(address, 0) for address in sorted(container_addresses(stack, service))]


def replica_metrics(stack: ComposeStack, service: str, port: int) -> list[str]:
    """Each replica's own /metrics (all its processes), read from inside its container."""
    url = f"http://127.0.0.1:{port}/metrics"
    script = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    )
    return [stack.exec(c, "python", "-c", script) for c in stack.containers(service)]


def drill_user(stack: ComposeStack, prefix: str) -> str:
    """Create a user through the gateway (AssertionError unless 201); return the email."""
    return create_user(Api(stack.user_manager_url), unique_email(prefix))


def count_sql(stack: ComposeStack, statement: str) -> int:
    return int(stack.sql("user-db", "user_manager", statement)[0][0])


def new_session(client: str | None = None) -> requests.Session:
    """A connection pool of one client; ``client`` gives it a credential of its own.

    The gateway limits each client (its credential, else its address), and every
    request of this run comes from one address: clients the drills mean as several
    (six creators, fifty racing retries) each send their own X-API-Key, so that the
    gateway counts them apart. With AUTH_MODE=off the services ignore it.
    """
    session = requests.Session()
    if client is not None:
        session.headers["X-API-Key"] = f"{client}-{RUN_ID}"
    return session


# --- the drills ---------------------------------------------------------------------------


def drill_concurrent_duplicates(stack: ComposeStack) -> DrillResult:
    """50 concurrent POST /users with one key, spread over the replicas."""
    result = DrillResult(
        "concurrent duplicates",
        f"{DUPLICATES} concurrent `POST /users`, one Idempotency-Key, through the gateway",
    )
    prefix = tag()
    email = unique_email("drill-dup")
    body, key = user_payload(email), str(uuid.uuid4())
    barrier = threading.Barrier(DUPLICATES)

    def send(number: int) -> tuple[int, str | None]:
        # Fifty clients' worth in flight at once: more than one client may have.
        session = new_session(client=f"drill-duplicate-{number}")
        barrier.wait()
        response = session.post(
            f"{stack.user_manager_url}/users",
            json=body,
            headers={"Idempotency-Key": key, "X-Request-ID": f"{prefix}-{number}"},
            timeout=HTTP_TIMEOUT,
        )
        return response.status_code, response.headers.get("Idempotent-Replayed")

    started = time.monotonic()
    with ThreadPoolExecutor(DUPLICATES) as pool:
        answers = list(pool.map(send, range(DUPLICATES)))
    elapsed = time.monotonic() - started
    created = answers.count((201, None))
    replays = answers.count((201, "true"))
    errors = sum(1 for status, _ in answers if status >= 500)
    users = count_sql(stack, f"SELECT count(*) FROM users WHERE email = '{email}'")
    per_replica = spread(stack, "user-manager", prefix)
    result.figures = [
        f"users stored: {users}",
        f"created answers: {created}",
        f"replays: {replays}",
        f"5xx: {errors}",
        f"per replica: {'/'.join(map(str, per_replica))}",
        f"all answered in {elapsed:.1f} s",
    ]
    result.check(users == 1, f"{users} users stored")
    result.check(created == 1, f"{created} created answers")
    result.check(replays == DUPLICATES - 1, f"{replays} replays, answers: {Counter(answers)}")
    result.check(errors == 0, f"{errors} 5xx")
    result.check(sum(1 for n in per_replica if n) == REPLICAS, f"spread {per_replica}")
    return result


@dataclass
class Acknowledged:
    email: str
    attempts: int
    seconds: float


class RetryingCreators:
    """Clients that create users one after another, retrying each with its key until a 201."""

    def __init__(self, stack: ComposeStack, prefix: str):
        self.stack = stack
        self.prefix = prefix
        self.stop = threading.Event()
        self.acknowledged: list[Acknowledged] = []
        self.retries: Counter = Counter()
        self.unexpected: list[str] = []
        self.gave_up: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(f"drill-creator-{n}",), daemon=True)
            for n in range(CREATORS)
        ]

    def __enter__(self) -> "RetryingCreators":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(CREATE_GIVE_UP_SECONDS + HTTP_TIMEOUT)

    def _run(self, client: str) -> None:
        session = new_session(client)
        while not self.stop.is_set():
            session = self._create_one(session, client)

    def _create_one(self, session: requests.Session, client: str) -> requests.Session:
        """Create one user, retrying it; return the session to go on with."""
        email = unique_email(self.prefix)
        body, key = user_payload(email), str(uuid.uuid4())
        started = time.monotonic()
        attempts = 0
        # Once started, a user is retried until acknowledged, even after the drill ends.
        while time.monotonic() - started < CREATE_GIVE_UP_SECONDS:
            attempts += 1
            try:
                response = session.post(
                    f"{self.stack.user_manager_url}/users",
                    json=body,
                    headers={"Idempotency-Key": key},
                    timeout=HTTP_TIMEOUT,
                )
            except requests.RequestException as error:
                self._count(type(error).__name__)
                session = new_session(client)
                time.sleep(0.2)
                continue
            if response.status_code == 201:
                with self._lock:
                    self.acknowledged.append(
                        Acknowledged(email, attempts, time.monotonic() - started)
                    )
                return session
            if response.status_code in (502, 503, 504):
                self._count(str(response.status_code))
                time.sleep(0.2)
                continue
            with self._lock:
                self.unexpected.append(f"{response.status_code} {response.text[:100]}")
            return session
        with self._lock:
            self.gave_up.append(email)
        return session

    def _count(self, kind: str) -> None:
        with self._lock:
            self.retries[kind] += 1


class InterestPoster:
    """Follow an airport for an existing user again and again, in a thread.

    Each ``POST /interests`` is a ``CheckUserExists`` call from a Data
    Collector replica to a User Manager replica; ``also_read`` adds a
    ``GET /users/<email>`` (the gateway to a User Manager replica) each time.
    """

    def __init__(self, stack: ComposeStack, email: str, *, also_read: bool = False):
        self.stack, self.email, self.also_read = stack, email, also_read
        self.stop = threading.Event()
        self.answers: Counter = Counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "InterestPoster":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self._thread.join(HTTP_TIMEOUT)

    def _run(self) -> None:
        session = new_session()
        while not self.stop.is_set():
            try:
                response = session.post(
                    f"{self.stack.data_collector_url}/interests",
                    json={"email": self.email, "airport_code": "LIRF"},
                    timeout=HTTP_TIMEOUT,
                )
                self.answers[response.status_code] += 1
                if self.also_read:
                    read = session.get(
                        f"{self.stack.user_manager_url}/users/{self.email}", timeout=HTTP_TIMEOUT
                    )
                    self.answers[read.status_code] += 1
            except requests.RequestException as error:
                self.answers[type(error).__name__] += 1
            time.sleep(0.05)


def drill_crash_and_database_restart(stack: ComposeStack) -> DrillResult:
    """Retrying creators while a User Manager replica is SIGKILLed, then while user-db restarts."""
    result = DrillResult(
        "crash, database restart",
        f"{CREATORS} clients create users, each retried with its key until a 201: one User "
        "Manager replica SIGKILLed (restart policy brings it back), then `docker restart` of "
        "user-db; meanwhile `POST /interests` (gRPC CheckUserExists) in a loop during the kill",
    )
    follower = drill_user(stack, "drill-follower")
    prefix = "drill-crash"
    victim = stack.containers("user-manager")[0]
    with RetryingCreators(stack, prefix) as creators:
        with InterestPoster(stack, follower) as poster:
            time.sleep(3)
            first_run = stack.state(victim)["StartedAt"]
            stack.crash(victim)
            killed_at = time.monotonic()
            back = wait_until_healthy(stack, victim, timeout=180, started_after=first_run)
            time.sleep(3)
        recovered = back - killed_at
        (database,) = stack.containers("user-db")
        restart_started = time.monotonic()
        docker("restart", database, timeout=180)
        wait_for(f"{stack.user_manager_url}/users?limit=1", timeout=120)
        database_back = time.monotonic() - restart_started
        time.sleep(5)
    acknowledged = {ack.email for ack in creators.acknowledged}
    rows = stack.sql(
        "user-db",
        "user_manager",
        f"SELECT email, count(*) FROM users WHERE email LIKE '{prefix}.%' GROUP BY email",
    )
    stored = {email: int(count) for email, count in rows}
    lost = sorted(acknowledged - set(stored))
    doubled = sorted(email for email, count in stored.items() if count != 1)
    retried = sum(1 for ack in creators.acknowledged if ack.attempts > 1)
    slowest = max((ack.seconds for ack in creators.acknowledged), default=0.0)
    failed_follows = sum(n for answer, n in poster.answers.items() if answer not in (200, 201))
    result.figures = [
        f"acknowledged {len(acknowledged)}, stored {len(set(stored) & acknowledged)} "
        f"(lost {len(lost)}, more than once {len(doubled)})",
        f"users retried {retried}, retries {dict(creators.retries) or 0}",
        f"slowest acknowledgement {slowest:.1f} s",
        f"killed replica healthy again after {recovered:.0f} s, database back after "
        f"{database_back:.0f} s",
        f"POST /interests during the kill: {sum(poster.answers.values())}, failed {failed_follows}",
    ]
    result.check(not lost, f"acknowledged but not stored: {lost[:3]}")
    result.check(not doubled, f"stored more than once: {doubled[:3]}")
    result.check(not creators.unexpected, f"unexpected answers: {creators.unexpected[:3]}")
    result.check(not creators.gave_up, f"never acknowledged: {len(creators.gave_up)}")
    result.check(len(acknowledged) > 0, "nothing acknowledged")
    result.check(failed_follows == 0, f"POST /interests answers: {dict(poster.answers)}")
    return result


def wait_until_healthy(
    stack: ComposeStack, container: str, *, timeout: float, started_after: str | None = None
) -> float:
    """Wait until a container is healthy; return the monotonic time then.

    ``started_after``: the container's ``StartedAt`` before it was killed; the
    wait is then for the run that started since (its restart).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stack.state(container)
        restarted = started_after is None or state.get("StartedAt") != started_after
        if restarted and state.get("Running") and state["Health"]["Status"] == "healthy":
            return time.monotonic()
        time.sleep(0.5)
    raise ComposeError(f"{stack.name_of(container)} not healthy again within {timeout:.0f} s")


@dataclass
class CollectionFigures:
    """What the simulator's call log says about the collection cycles it saw."""

    cycles: int
    fetches: int
    most_fetches_of_one_range_in_a_cycle: int
    ranges_fetched_twice: int
    shortest_gap_seconds: float | None


def analyse_collection(calls: list[dict]) -> CollectionFigures:
    """Group the simulator's flight calls into cycles and count fetches per range."""
    flights = sorted(
        (call for call in calls if call["endpoint"] != "token"), key=lambda c: c["started_at"]
    )
    cycles: list[list[dict]] = []
    for call in flights:
        if not cycles or call["started_at"] - cycles[-1][-1]["started_at"] > CYCLE_GAP_SECONDS:
            cycles.append([])
        cycles[-1].append(call)

    def range_of(call: dict) -> tuple:
        params = call["params"]
        return call["endpoint"], params.get("airport"), params.get("begin"), params.get("end")

    per_cycle = [Counter(range_of(call) for call in cycle) for cycle in cycles]
    overall = Counter(range_of(call) for call in flights)
    starts = [cycle[0]["started_at"] for cycle in cycles]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    return CollectionFigures(
        cycles=len(cycles),
        fetches=len(flights),
        most_fetches_of_one_range_in_a_cycle=max(
            (n for counts in per_cycle for n in counts.values()), default=0
        ),
        ranges_fetched_twice=sum(1 for n in overall.values() if n > 1),
        shortest_gap_seconds=min(gaps) if gaps else None,
    )


def drill_collection_once_per_period(stack: ComposeStack) -> DrillResult:
    """Three workers, one collection per period: the simulator's call log says so."""
    result = DrillResult(
        "collection once per period",
        f"{REPLICAS} Data Collector replicas, each with its worker, one period = "
        f"{PERIOD_SECONDS} s (`COLLECT_INTERVAL_MINUTES=1`, `COLLECT_MIN_GAP_MINUTES=0`); "
        f"two airports followed, the simulator's call log read over {PERIODS_OBSERVED} periods",
    )
    sim = SimulatorControl(stack.simulator_url)
    session = new_session()
    email = drill_user(stack, "drill-collect")
    followed_at = time.time()
    for airport in ("LIRF", "EGLL"):
        answer = session.post(
            f"{stack.data_collector_url}/interests",
            json={"email": email, "airport_code": airport},
            timeout=HTTP_TIMEOUT,
        )
        result.check(answer.status_code in (200, 201), f"follow {airport}: {answer.status_code}")
    # The backfill cycle the new interests asked for: done once it has fetched and then
    # nothing more is fetched.
    settle(sim, since=followed_at)
    sim.clear_calls()
    before = cycle_counts(stack)
    time.sleep(PERIODS_OBSERVED * PERIOD_SECONDS)
    # A cycle that started near the end finishes (and is counted) before anything is read.
    settle(sim)
    figures = analyse_collection(sim.calls())
    after = cycle_counts(stack)
    ran, skipped, busy = (
        [after[i][outcome] - before[i][outcome] for i in range(len(after))]
        for outcome in ("ran", "skipped", "busy")
    )
    gap = figures.shortest_gap_seconds
    result.figures = [
        f"cycles seen by the simulator: {figures.cycles} in {PERIODS_OBSERVED} periods",
        f"fetches: {figures.fetches}, at most {figures.most_fetches_of_one_range_in_a_cycle} "
        "per range per cycle",
        f"ranges fetched in two cycles: {figures.ranges_fetched_twice}",
        f"shortest time between cycles: {gap:.0f} s" if gap is not None else "one cycle",
        f"per replica: cycles run {'/'.join(map(str, ran))}, skipped as already run this "
        f"period {'/'.join(map(str, skipped))}, skipped as another was running "
        f"{'/'.join(map(str, busy))}",
    ]
    result.check(figures.most_fetches_of_one_range_in_a_cycle == 1, "a range fetched twice")
    result.check(
        PERIODS_OBSERVED - 1 <= figures.cycles <= PERIODS_OBSERVED + 1,
        f"{figures.cycles} cycles in {PERIODS_OBSERVED} periods",
    )
    result.check(gap is None or gap >= PERIOD_SHARE * PERIOD_SECONDS - 2, f"cycles {gap} s apart")
    # The call log and the replicas' counters are read one after the other: a cycle may
    # start and finish between the two reads, in one and not the other.
    result.check(
        abs(sum(ran) - figures.cycles) <= 1, f"replicas ran {ran}, the simulator saw more or less"
    )
    return result


def settle(
    sim: SimulatorControl, *, since: float = 0.0, quiet_seconds: float = 5, timeout: float = 120
) -> None:
    """Wait until the simulator had a flight call after ``since``, then none for a while.

    ``since``: a wall-clock time; without a call after it, calls of earlier cycles
    would count, and the wait could end before the cycle waited for has begun.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = [c for c in sim.calls() if c["endpoint"] != "token" and c["started_at"] >= since]
        if calls and time.time() - max(c["finished_at"] for c in calls) > quiet_seconds:
            return
        time.sleep(1)
    raise ComposeError(f"the simulator did not settle within {timeout:.0f} s")


# Outcomes of a cycle that did not fetch: every other outcome (done, partial, failed,
# rate-limited) is a cycle that ran.
NOT_RUN = ("skipped", "busy", "waiting")


def cycles_by_outcome(metrics_text: str) -> dict[str, int]:
    """One replica's ``collection_cycles_total`` by outcome, whatever other labels it has."""
    return {
        sample.labels["outcome"]: int(sample.value)
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "collection_cycles"
        for sample in family.samples
        if sample.name == "collection_cycles_total"
    }


def cycle_counts(stack: ComposeStack) -> list[dict[str, int]]:
    """Each Data Collector replica's collection cycles: ran, skipped and busy."""
    counts = []
    for text in replica_metrics(stack, "data-collector", 5002):
        by_outcome = cycles_by_outcome(text)
        ran = sum(n for outcome, n in by_outcome.items() if outcome not in NOT_RUN)
        counts.append(
            {"ran": ran, "skipped": by_outcome.get("skipped", 0), "busy": by_outcome.get("busy", 0)}
        )
    return counts


def drill_deletes_while_collector_down(stack: ComposeStack) -> DrillResult:
    """Users deleted while every Data Collector replica is stopped: interests go on return."""
    result = DrillResult(
        "deletes while the collector is down",
        f"5 users follow airports; every Data Collector replica stopped (`docker compose stop`) "
        f"for {COLLECTOR_OUTAGE_SECONDS} s; the users deleted meanwhile; then started again",
    )
    session = new_session()
    emails = [drill_user(stack, "drill-outage") for _ in range(5)]
    for email in emails:
        for airport in ("LIRF", "LIMC"):
            session.post(
                f"{stack.data_collector_url}/interests",
                json={"email": email, "airport_code": airport},
                timeout=HTTP_TIMEOUT,
            )
    followed = sum(
        len(session.get(f"{stack.data_collector_url}/interests/{e}", timeout=HTTP_TIMEOUT).json())
        for e in emails
    )
    stopped_at = time.monotonic()
    stack.compose("stop", "data-collector", timeout=120)
    deletes = []
    for email in emails:
        started = time.monotonic()
        answer = session.delete(
            f"{stack.user_manager_url}/users/{email}",
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=HTTP_TIMEOUT,
        )
        deletes.append((answer.status_code, time.monotonic() - started))
    health = session.get(f"{stack.user_manager_url}/health", timeout=HTTP_TIMEOUT).json()
    asked_at = time.monotonic()
    down = session.get(f"{stack.data_collector_url}/interests/{emails[0]}", timeout=HTTP_TIMEOUT)
    down_seconds = time.monotonic() - asked_at
    time.sleep(max(0.0, COLLECTOR_OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    start_issued = time.monotonic()
    stack.compose("start", "data-collector", timeout=300)
    started = time.monotonic()
    first_answer = started + wait_for(f"{stack.data_collector_url}/ping", timeout=180)

    def remaining() -> int:
        total = 0
        for email in emails:
            answer = session.get(
                f"{stack.data_collector_url}/interests/{email}", timeout=HTTP_TIMEOUT
            )
            total += len(answer.json()) if answer.status_code == 200 else 1
        return total

    gone_at = None
    while time.monotonic() - first_answer < 120:
        if remaining() == 0:
            gone_at = time.monotonic()
            break
        time.sleep(0.5)
    backlog = session.get(f"{stack.user_manager_url}/health", timeout=HTTP_TIMEOUT).json()
    slowest_delete = max(seconds for _, seconds in deletes)
    result.figures = [
        f"interests followed {followed}",
        f"DELETE answers {dict(Counter(status for status, _ in deletes))}, "
        f"slowest {slowest_delete:.1f} s",
        f"while down: User Manager {health['status']}, outbox backlog "
        f"{health['outbox']['backlog']}; collector REST {down.status_code} in {down_seconds:.1f} s "
        f"`{down.text.strip()[:60]}`",
        f"collector answered {first_answer - start_issued:.0f} s after `start`",
        "interests gone "
        + (f"{gone_at - first_answer:.1f} s after it answered" if gone_at else "never"),
        f"backlog then {backlog['outbox']['backlog']}",
    ]
    result.check(all(status == 200 for status, _ in deletes), f"DELETE answers {deletes}")
    result.check(slowest_delete < 5, f"a DELETE took {slowest_delete:.1f} s")
    result.check(health["outbox"]["backlog"] >= len(emails), f"backlog {health['outbox']}")
    # 502 once the gateway finds no replica by name; 504 within its resolver's 5 s after the
    # last replica went, while it still tries their old addresses (2 s each, three of them).
    result.check(
        down.status_code in (502, 504) and "error" in down.json() and down_seconds < 10,
        f"down: {down.status_code} in {down_seconds:.1f} s {down.text[:80]}",
    )
    result.check(
        gone_at is not None and gone_at - first_answer <= INTERESTS_GONE_WITHIN_SECONDS,
        "interests not gone within 30 s of the collector's return",
    )
    result.check(backlog["outbox"]["backlog"] == 0, f"backlog left {backlog['outbox']}")
    return result


SLOW_HEADERS = b"POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
SLOW_BODY = (
    b"POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Idempotency-Key: slow\r\nContent-Length: 100\r\n\r\n"
    b'{"email": "slow'
)
# The same attack from inside the network straight at one replica: what the gateway spares.
DIRECT_ATTACK = """
import socket, sys, time, urllib.request
host, count, normal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for i in range(count):
    s = socket.create_connection((host, 5001), timeout=5)
    s.sendall(HEADERS if i % 2 else BODY)
    held.append(s)
time.sleep(1)
answered = 0
for _ in range(normal):
    try:
        urllib.request.urlopen(f"http://{host}:5001/ping", timeout=2)
        answered += 1
    except Exception:
        pass
print(answered)
"""


def drill_slow_clients(stack: ComposeStack) -> DrillResult:
    """200 connections that send half a request and wait; normal requests still answered."""
    result = DrillResult(
        "slow clients",
        f"{SLOW_CLIENTS} connections to the User Manager's port send half a request (half "
        "of them half the headers, half the headers and half the body) and wait; then "
        f"{NORMAL_REQUESTS} `GET /ping`, one `POST /users` and one `GET /users/<email>`",
    )
    held = []
    for number in range(SLOW_CLIENTS):
        connection = socket.create_connection(("127.0.0.1", stack.user_manager_port), timeout=5)
        connection.sendall(SLOW_HEADERS if number % 2 else SLOW_BODY)
        held.append(connection)
    opened = time.monotonic()
    time.sleep(1)
    # Another client than the attacker (whose address this run shares): its own allowance.
    session = new_session(client="drill-normal")
    pings: list[tuple[int | str, float]] = []
    for _ in range(NORMAL_REQUESTS):
        started = time.monotonic()
        try:
            status: int | str = session.get(
                f"{stack.user_manager_url}/ping", timeout=10
            ).status_code
        except requests.RequestException as error:
            status = type(error).__name__
        pings.append((status, time.monotonic() - started))
    email = unique_email("drill-slow")
    started = time.monotonic()
    created = session.post(
        f"{stack.user_manager_url}/users",
        json=user_payload(email),
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=10,
    )
    read = session.get(f"{stack.user_manager_url}/users/{email}", timeout=10)
    api_seconds = time.monotonic() - started
    closed_after = wait_closed(held, timeout=60) - opened
    direct = direct_attack(stack)
    answered = sum(
        1 for status, seconds in pings if status == 200 and seconds <= ANSWER_WITHIN_SECONDS
    )
    slowest = max(seconds for _, seconds in pings)
    result.figures = [
        f"`GET /ping` answered within {ANSWER_WITHIN_SECONDS} s: {answered} of "
        f"{NORMAL_REQUESTS}, slowest {slowest * 1000:.0f} ms",
        f"`POST /users` {created.status_code} and `GET` {read.status_code} in "
        f"{api_seconds * 1000:.0f} ms",
        f"the gateway closed the slow connections after {closed_after:.0f} s",
        f"for comparison, straight at one replica (no gateway): `GET /ping` answered "
        f"{direct} of {NORMAL_REQUESTS} within 2 s",
    ]
    result.check(answered == NORMAL_REQUESTS, f"pings: {pings}")
    result.check(created.status_code == 201 and read.status_code == 200, "the API call failed")
    result.check(api_seconds < 2 * ANSWER_WITHIN_SECONDS, f"API call took {api_seconds:.1f} s")
    return result


def wait_closed(connections: list[socket.socket], *, timeout: float) -> float:
    """Wait until the peer has closed every connection; return the monotonic time then."""
    deadline = time.monotonic() + timeout
    open_ones = list(connections)
    while open_ones and time.monotonic() < deadline:
        still = []
        for connection in open_ones:
            connection.settimeout(0.01)
            try:
                if connection.recv(4096):
                    still.append(connection)  # an answer (a 408): the close follows
            except TimeoutError:
                still.append(connection)
            except OSError:
                pass
        open_ones = still
        if open_ones:
            time.sleep(0.2)
    for connection in connections:
        connection.close()
    return time.monotonic()


def direct_attack(stack: ComposeStack) -> str:
    """Run the slow-client attack from a collector container straight at one User Manager."""
    target = sorted(container_addresses(stack, "user-manager"))[0]
    attacker = stack.containers("data-collector")[0]
    script = DIRECT_ATTACK.replace("HEADERS", repr(SLOW_HEADERS)).replace("BODY", repr(SLOW_BODY))
    try:
        output = stack.exec(
            attacker, "python", "-", target, str(SLOW_CLIENTS), str(NORMAL_REQUESTS), stdin=script
        )
    except ComposeError as error:
        return f"not measured ({error})"
    return output.strip()


def drill_scale_without_restart(stack: ComposeStack) -> DrillResult:
    """A fourth User Manager replica gets REST and gRPC calls; removing it costs no error."""
    result = DrillResult(
        "scale up and down",
        f"`up --scale user-manager={REPLICAS + 1}` while the stack runs, then back to "
        f"{REPLICAS}, with requests flowing; nothing else restarted",
    )
    session = new_session()
    follower = drill_user(stack, "drill-scale")
    # Every collector web worker opens its channel to the User Manager now, before the new
    # replica exists: it must find the new one by itself.
    follow_again(stack, session, follower, FOLLOWS)
    before = set(stack.containers("user-manager"))
    stack.up(**{"user-manager": REPLICAS + 1})
    (added,) = set(stack.containers("user-manager")) - before
    healthy_at = wait_until_healthy(stack, added, timeout=180)
    address = next(
        a
        for a, name in container_addresses(stack, "user-manager").items()
        if name == stack.name_of(added)
    )
    prefix = tag()
    rest_at = None
    for number in range(1000):
        session.get(
            f"{stack.user_manager_url}/ping",
            headers={"X-Request-ID": f"{prefix}-{number}"},
            timeout=HTTP_TIMEOUT,
        )
        if number % 10 == 9 and upstreams(stack, prefix).get(address):
            rest_at = time.monotonic()
            break
        if time.monotonic() - healthy_at > NEW_REPLICA_WITHIN_SECONDS:
            break
    # The channels opened before it learn of it when their connections age out.
    time.sleep(max(0.0, healthy_at + CONNECTIONS_AGED_SECONDS - time.monotonic()))
    replicas = stack.containers("user-manager")
    calls_before = [stack.logs(c).count(CHECK_SERVED) for c in replicas]
    follow_again(stack, session, follower, FOLLOWS)
    calls = [
        stack.logs(c).count(CHECK_SERVED) - n for c, n in zip(replicas, calls_before, strict=True)
    ]
    new_share = calls[replicas.index(added)]
    with InterestPoster(stack, follower, also_read=True) as poster:
        stack.up(**{"user-manager": REPLICAS})
        time.sleep(5)
    errors = sum(n for answer, n in poster.answers.items() if answer not in (200, 201))
    left = len(stack.containers("user-manager"))
    result.figures = [
        "new replica's first REST request "
        + (f"{rest_at - healthy_at:.1f} s after it was healthy" if rest_at else "never"),
        f"{FOLLOWS} `POST /interests` {CONNECTIONS_AGED_SECONDS} s later: CheckUserExists "
        f"per replica {'/'.join(map(str, calls))} (the new one: {new_share})",
        f"scaling back to {REPLICAS}: {sum(poster.answers.values())} requests "
        f"(`POST /interests`, `GET /users/<email>`), {errors} failed; replicas left {left}",
    ]
    result.check(rest_at is not None, "the gateway never sent the new replica a request")
    result.check(new_share >= FOLLOWS // (REPLICAS + 1) // 3, f"gRPC calls per replica {calls}")
    result.check(errors == 0, f"answers while scaling down: {dict(poster.answers)}")
    result.check(left == REPLICAS, f"{left} replicas left")
    return result


def follow_again(stack: ComposeStack, session: requests.Session, email: str, times: int) -> None:
    """Follow LIRF again ``times`` times: each asks a User Manager replica over gRPC."""
    for _ in range(times):
        session.post(
            f"{stack.data_collector_url}/interests",
            json={"email": email, "airport_code": "LIRF"},
            timeout=HTTP_TIMEOUT,
        )


# --- the gateway's limits, its log, and what each container holds --------------------------

FLOOD_REQUESTS = 600
FLOOD_IN_FLIGHT = 32
# The second client asks this often while the flood runs.
SECOND_CLIENT_INTERVAL_SECONDS = 0.05
MIGRATION_STEPS = tuple(migration_services(load_compose()))
DATABASES = tuple(
    name
    for name, spec in load_compose()["services"].items()
    if spec.get("image", "").startswith("postgres")
)
EMAIL_IN_LOG = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)


def drill_rate_limit(stack: ComposeStack) -> DrillResult:
    """One client floods creates and sees 429s; a second client is served meanwhile."""
    result = DrillResult(
        "limits per client",
        f"{FLOOD_REQUESTS} `POST /users` from one client (no credential: its address), "
        f"{FLOOD_IN_FLIGHT} in flight, through the gateway; meanwhile a second client (an "
        f"API key of its own, same address) reads its user every "
        f"{SECOND_CLIENT_INTERVAL_SECONDS * 1000:.0f} ms",
    )
    second_email = drill_user(stack, "drill-second")
    # What the setup cost the flooding client (its address) drains first.
    time.sleep(2)
    stop = threading.Event()
    second: list[tuple[int | str, float]] = []

    def second_client() -> None:
        session = new_session(client="drill-second")
        while not stop.is_set():
            started = time.monotonic()
            try:
                status: int | str = session.get(
                    f"{stack.user_manager_url}/users/{second_email}", timeout=HTTP_TIMEOUT
                ).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            second.append((status, time.monotonic() - started))
            stop.wait(SECOND_CLIENT_INTERVAL_SECONDS)

    local = threading.local()

    def create(_number: int) -> tuple[int | str, str | None, bool]:
        if not hasattr(local, "session"):
            local.session = new_session()
        try:
            answer = local.session.post(
                f"{stack.user_manager_url}/users",
                json=user_payload(unique_email("drill-flood")),
                headers={"Idempotency-Key": str(uuid.uuid4())},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as error:
            return type(error).__name__, None, False
        try:
            shaped = isinstance(answer.json().get("error"), str)
        except ValueError:
            shaped = False
        return answer.status_code, answer.headers.get("Retry-After"), shaped

    reader = threading.Thread(target=second_client, daemon=True)
    reader.start()
    time.sleep(0.5)
    started = time.monotonic()
    with ThreadPoolExecutor(FLOOD_IN_FLIGHT) as pool:
        answers = list(pool.map(create, range(FLOOD_REQUESTS)))
    flood_seconds = time.monotonic() - started
    time.sleep(0.5)
    stop.set()
    reader.join(HTTP_TIMEOUT)
    statuses = Counter(status for status, _, _ in answers)
    refused = [(after, shaped) for status, after, shaped in answers if status == 429]
    # Told to come back after Retry-After seconds, the flooding client is served again.
    time.sleep(max(int(after or 1) for after, _ in refused) if refused else 1)
    again = new_session().post(
        f"{stack.user_manager_url}/users",
        json=user_payload(unique_email("drill-flood")),
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=HTTP_TIMEOUT,
    )
    second_statuses = Counter(status for status, _ in second)
    slowest = max((seconds for _, seconds in second), default=0.0)
    result.figures = [
        f"{FLOOD_REQUESTS} requests in {flood_seconds:.1f} s: "
        + ", ".join(f"{status} x {n}" for status, n in sorted(statuses.items(), key=str)),
        f"every 429 with Retry-After {sorted({after for after, _ in refused})} and a JSON "
        f"error: {all(after and shaped for after, shaped in refused)}",
        f"second client meanwhile: {len(second)} requests, "
        + ", ".join(f"{status} x {n}" for status, n in sorted(second_statuses.items(), key=str))
        + f", slowest {slowest * 1000:.0f} ms",
        f"the flooding client after Retry-After: {again.status_code}",
    ]
    result.check(statuses[429] > 0, f"no 429 among {dict(statuses)}")
    result.check(set(statuses) <= {201, 429}, f"answers {dict(statuses)}")
    result.check(all(after and shaped for after, shaped in refused), "a 429 without Retry-After")
    result.check(len(second) > 0 and set(second_statuses) == {200}, f"second {second_statuses}")
    result.check(again.status_code == 201, f"after Retry-After: {again.status_code}")
    return result


def drill_gateway_log_and_containers(stack: ComposeStack) -> DrillResult:
    """After everything: no email in the gateway's log; who holds an owner password; lockdown."""
    result = DrillResult(
        "gateway log, containers",
        "after the suite and every drill: the gateway's whole log (access and error) searched "
        "for an email; `docker inspect` of every container: its environment, read-only root, "
        "capabilities, no-new-privileges, memory limit",
    )
    (gateway,) = stack.containers("gateway")
    log = stack.logs(gateway)
    emails = EMAIL_IN_LOG.findall(log)
    refused = sum(1 for line in log.splitlines() if "=REJECTED" in line)
    result.figures = [
        f"gateway log: {len(log.splitlines())} lines, {len(emails)} with an email, "
        f"{refused} refused by the limits"
    ]
    result.check(not emails, f"emails in the gateway's log: {emails[:3]}")

    owner_passwords: set[str] = set()
    inspected = {}
    for container in stack.all_containers() + stack.compose("ps", "-a", "-q").stdout.split():
        if container in inspected:
            continue
        details = json.loads(docker("inspect", container))[0]
        inspected[container] = details
        env = dict(item.split("=", 1) for item in details["Config"]["Env"])
        if "OWNER_PASSWORD" in env:
            owner_passwords.add(env["OWNER_PASSWORD"])
    holders, loose = [], []
    for details in inspected.values():
        name = details["Name"].lstrip("/").removeprefix(f"{stack.project}_")
        env = details["Config"]["Env"]
        if any(password in item for item in env for password in owner_passwords):
            holders.append(name)
        host = details["HostConfig"]
        locked = (
            host.get("ReadonlyRootfs")
            and host.get("CapDrop") == ["ALL"]
            and "no-new-privileges:true" in (host.get("SecurityOpt") or [])
            and host.get("Memory", 0) > 0
        )
        if not locked:
            loose.append(name)
    # The databases' own (their init script's) and the migration steps': no one else's.
    serving = [h for h in holders if not h.startswith((*DATABASES, *MIGRATION_STEPS))]
    result.figures += [
        f"an owner password in the environment of: {', '.join(sorted(holders))}",
        f"{len(inspected)} containers; not locked down: {', '.join(sorted(loose)) or 'none'}",
    ]
    result.check(not serving, f"serving containers holding an owner password: {serving}")
    result.check(not loose, f"not locked down: {loose}")
    return result


# --- the alerts pipeline ------------------------------------------------------------------

# Each drill's crossings: events of this many airports, each followed by this many interests
# whose upper threshold the figure crosses, so every follower gets exactly one email.
ALERT_AIRPORTS = ("LIRF", "LIMC", "EGLL", "LFPG", "EDDF", "LEMD", "EHAM", "LOWW")
FOLLOWERS_PER_EVENT = 100
ALERT_FIGURE = 100
ALERT_THRESHOLD = 10
# From the last publish to the last email: the default ack wait (30 s) for what a killed
# replica held, the retries' backoff after the broker's return, and 2 cores for all of it.
ALERTS_SETTLED_WITHIN_SECONDS = 240
# How long the publisher keeps trying while the broker is away (the collector's outbox
# relay does the same, with backoff).
PUBLISH_RETRY_SECONDS = 120
# Emails already accepted when a fault is made: the pipeline is then mid-flow.
MID_FLOW_EMAILS = 20
# How long the broker stays stopped: publishers and consumers meet a broker that is away.
BROKER_OUTAGE_SECONDS = 10

# Run in a Data Collector container (on the broker's network, with the services' code): the
# drill's stand-in for the collector's outbox relay, publishing `to-alert-system` events
# (stdin, as JSON) until the broker has stored them all. Ids come from the content, so a
# retry after a broker outage is a duplicate the broker drops.
PUBLISH_SCRIPT = """
import json, os, sys, time
from common.broker.connection import Broker, BrokerUnavailableError
from common.broker.messages import ALERT_SYSTEM_EVENT, as_message
from common.broker.streams import TO_ALERT_SYSTEM
messages = [as_message(TO_ALERT_SYSTEM, ALERT_SYSTEM_EVENT.validate_python(event))
            for event in json.load(sys.stdin)]
broker = Broker(os.environ["NATS_URL"], name="drill-publisher")
deadline, attempts = time.monotonic() + float(sys.argv[1]), 0
while True:
    attempts += 1
    try:
        stored = broker.publish_many(messages)
        break
    except BrokerUnavailableError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
print(json.dumps({"new": sum(stored), "attempts": attempts}))
"""
# The streams and the durable consumers of the pipeline, as the broker counts them.
BROKER_STATE_SCRIPT = """
import json, os
from common.broker.connection import Broker
from common.broker.streams import TO_ALERT_SYSTEM, TO_NOTIFIER, stream_of
async def state(js):
    found = {}
    for subject, durable in ((TO_ALERT_SYSTEM, "alert_system"), (TO_NOTIFIER, "alert_notifier")):
        stream = stream_of(subject).name
        info = await js.stream_info(stream)
        consumer = await js.consumer_info(stream, durable)
        found[subject] = {"last_seq": info.state.last_seq,
                          "deliveries": consumer.delivered.consumer_seq,
                          "delivered_up_to": consumer.delivered.stream_seq}
    return found
print(json.dumps(Broker(os.environ["NATS_URL"], name="drill-probe").call(state)))
"""


@dataclass
class Crossings:
    """One drill's interests: a ``flights`` event per airport, one crossing per follower."""

    name: str
    airports: tuple[str, ...]
    events: list[dict] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = uuid.uuid4().int % 10**9 * 10**4
        now = datetime.now(UTC)
        start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=2)
        for number, airport in enumerate(self.airports):
            followers = []
            for index in range(FOLLOWERS_PER_EVENT):
                email = f"{self.name}.{airport.lower()}.{index}.{RUN_ID}@example.com"
                followers.append(
                    Follower(
                        interest_id=base + number * FOLLOWERS_PER_EVENT + index,
                        email=email,
                        high_value=ALERT_THRESHOLD,
                    )
                )
                self.emails.append(email)
            event = FlightsEvent(
                kind="flights",
                airport=airport,
                window=Window(start=start, end=start + timedelta(days=1)),
                arrivals=ALERT_FIGURE // 2,
                departures=ALERT_FIGURE - ALERT_FIGURE // 2,
                flights=ALERT_FIGURE,
                followers=followers,
                committed_at=now,
            )
            self.events.append(event.model_dump(mode="json"))


@dataclass
class MailTally:
    """What the mail catcher caught for a drill's recipients."""

    expected: int
    sent: int
    duplicates: int
    lost: int

    def __str__(self) -> str:
        return (
            f"emails expected {self.expected}, sent {self.sent}, duplicates {self.duplicates}, "
            f"lost {self.lost}"
        )


def caught(stack: ComposeStack) -> Counter:
    """Count the emails the mail catcher holds, by recipient."""
    mails = requests.get(f"{stack.mail_catcher_url}/messages", timeout=HTTP_TIMEOUT).json()
    return Counter(recipient for mail in mails for recipient in mail["to"])


def tally(stack: ComposeStack, *drills: Crossings) -> MailTally:
    """Count the emails of drills' recipients: each should have exactly one."""
    counts = caught(stack)
    mine = [counts.get(email, 0) for crossings in drills for email in crossings.emails]
    return MailTally(
        expected=len(mine),
        sent=sum(1 for n in mine if n),
        duplicates=sum(n - 1 for n in mine if n > 1),
        lost=sum(1 for n in mine if n == 0),
    )


def publish(stack: ComposeStack, crossings: Crossings) -> dict:
    """Publish a drill's events from a Data Collector container, as its outbox relay would."""
    publisher = stack.containers("data-collector")[-1]
    output = stack.exec(
        publisher,
        "python",
        "-c",
        PUBLISH_SCRIPT,
        str(PUBLISH_RETRY_SECONDS),
        stdin=json.dumps(crossings.events),
    )
    return json.loads(output.strip().splitlines()[-1])


def broker_state(stack: ComposeStack) -> dict:
    """The pipeline's streams and consumers, read from a Data Collector container."""
    output = stack.exec(stack.containers("data-collector")[-1], "python", "-c", BROKER_STATE_SCRIPT)
    return json.loads(output.strip().splitlines()[-1])


def pipeline_settled(stack: ComposeStack) -> bool:
    """Tell whether both consumers are caught up and both outboxes empty (/health)."""
    try:
        system = requests.get(f"{stack.alert_system_url}/health", timeout=HTTP_TIMEOUT).json()
        notifier = requests.get(f"{stack.alert_notifier_url}/health", timeout=HTTP_TIMEOUT).json()
        facts = [
            (system["alerts"], "to-alert-system"),
            (notifier["emails"], "to-notifier"),
        ]
        for pipeline, subject in facts:
            lag = pipeline["consumers"][subject]
            if lag["pending"] or lag["unacknowledged"] or pipeline["outbox"]["waiting"]:
                return False
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False
    return True


def wait_for_unacknowledged(stack: ComposeStack, subject: str, timeout: float = 10) -> int:
    """Wait until the consumer of ``subject`` holds unacknowledged messages; return how many."""
    url = stack.alert_system_url if subject == "to-alert-system" else stack.alert_notifier_url
    key = "alerts" if subject == "to-alert-system" else "emails"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = requests.get(f"{url}/health", timeout=HTTP_TIMEOUT).json()
            held = health[key]["consumers"][subject]["unacknowledged"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            held = 0
        if held:
            return held
        time.sleep(0.05)
    return 0


def redeliveries(before: dict, after: dict) -> dict[str, int]:
    """Deliveries beyond each message's first, by consumed subject, between two states."""
    return {
        subject: (after[subject]["deliveries"] - before[subject]["deliveries"])
        - (after[subject]["delivered_up_to"] - before[subject]["delivered_up_to"])
        for subject in after
    }


def wait_for_every_email(stack: ComposeStack, *drills: Crossings) -> float | None:
    """Wait until every recipient has an email and the pipeline is settled; return when."""
    deadline = time.monotonic() + ALERTS_SETTLED_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if tally(stack, *drills).lost == 0 and pipeline_settled(stack):
            return time.monotonic()
        time.sleep(1)
    return None


def wait_for_emails(stack: ComposeStack, crossings: Crossings, count: int) -> int:
    """Wait until at least ``count`` of the drill's emails were caught; return how many."""
    deadline = time.monotonic() + ALERTS_SETTLED_WITHIN_SECONDS
    sent = 0
    while time.monotonic() < deadline:
        sent = tally(stack, crossings).sent
        if sent >= count:
            break
        time.sleep(0.2)
    return sent


def drill_alert_from_the_collector(stack: ComposeStack) -> DrillResult:
    """A threshold set through the gateway: the collector's own event gives one email."""
    result = DrillResult(
        "alert end to end",
        "a user follows LIRF with an upper threshold of 1 (`POST /interests` through the "
        "gateway): the collector publishes the airport's figure over its alert window, the "
        "Alert System evaluates it, the notifier mails; then one more collection period",
    )
    session = new_session()
    email = drill_user(stack, "drill-e2e")
    followed_at = time.monotonic()
    answer = session.post(
        f"{stack.data_collector_url}/interests",
        json={"email": email, "airport_code": "LIRF", "high_value": 1},
        timeout=HTTP_TIMEOUT,
    )
    result.check(answer.status_code in (200, 201), f"follow: {answer.status_code} {answer.text}")
    mailed_at = None
    deadline = followed_at + ALERTS_SETTLED_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if caught(stack).get(email):
            mailed_at = time.monotonic()
            break
        time.sleep(1)
    # A cycle later: still one email (a crossing, not a level), and the collector shows it.
    time.sleep(PERIOD_SECONDS)
    emails = caught(stack).get(email, 0)
    (item,) = session.get(
        f"{stack.data_collector_url}/interests/{email}", timeout=HTTP_TIMEOUT
    ).json()
    window = item.get("alert_window") or {}
    state = item.get("alert_state") or {}
    result.figures = [
        "first email "
        + (f"{mailed_at - followed_at:.0f} s after `POST /interests`" if mailed_at else "never"),
        f"emails after one more period: {emails}",
        f"`GET /interests`: {window.get('flights')} flights over the window, alert "
        f"{state.get('condition')}, last email at {state.get('last_email_at')}",
    ]
    result.check(mailed_at is not None, "no email")
    result.check(emails == 1, f"{emails} emails")
    result.check(state.get("condition") == "above", f"alert state {state}")
    result.check(bool(state.get("last_email_at")), "the collector never learnt of the email")
    return result


def drill_broker_restart(stack: ComposeStack) -> DrillResult:
    """The broker restarted mid-flow: its volume keeps the streams, nothing is lost or doubled."""
    first = Crossings("drill-broker-a", ALERT_AIRPORTS[:4])
    second = Crossings("drill-broker-b", ALERT_AIRPORTS[4:])
    result = DrillResult(
        "broker restarted",
        f"{len(first.emails)} crossings published on `to-alert-system` (message models, from a "
        f"collector container); once {MID_FLOW_EMAILS} emails were out, nats stopped "
        f"(`docker stop`) for {BROKER_OUTAGE_SECONDS} s and started again, "
        f"{len(second.emails)} more crossings published while it was down (retried until "
        "stored); emails counted in the mail catcher",
    )
    before = broker_state(stack)
    published = publish(stack, first)
    in_flight = wait_for_emails(stack, first, MID_FLOW_EMAILS)
    (broker,) = stack.containers("nats")
    stopped_at = time.monotonic()
    docker("stop", broker, timeout=120)
    # Published while the broker is away, as the collector's outbox would: stored once it is
    # back. The publisher starts now, so its first attempts find no broker.
    second_run: dict = {}
    publisher = threading.Thread(target=lambda: second_run.update(publish(stack, second)))
    publisher.start()
    time.sleep(max(0.0, stopped_at + BROKER_OUTAGE_SECONDS - time.monotonic()))
    docker("start", broker, timeout=120)
    back = wait_until_healthy(stack, broker, timeout=120) - stopped_at
    publisher.join(PUBLISH_RETRY_SECONDS + HTTP_TIMEOUT)
    after = broker_state(stack)
    done_at = wait_for_every_email(stack, first, second)
    total = tally(stack, first, second)
    kept = after["to-alert-system"]["last_seq"] - before["to-alert-system"]["last_seq"]
    again = redeliveries(before, broker_state(stack))
    result.figures = [
        str(total),
        f"at the stop: {in_flight} of {len(first.emails)} emails out",
        f"nats healthy again {back:.0f} s after the stop; the events published meanwhile "
        f"stored at attempt {second_run.get('attempts', 'none')}",
        f"to-alert-system kept all of the drill's events through the restart: {kept} of "
        f"{len(first.events + second.events)}",
        "redelivered: " + ", ".join(f"{subject} {n}" for subject, n in again.items()),
        "all mailed and settled "
        + (f"{done_at - stopped_at:.0f} s after the stop" if done_at else "never"),
    ]
    result.check(total.lost == 0, f"{total.lost} crossings never mailed")
    result.check(total.duplicates == 0, f"{total.duplicates} emails sent twice")
    result.check(done_at is not None, "the pipeline did not settle")
    result.check(in_flight < len(first.emails), "every email was out before the restart")
    result.check(second_run.get("new") == len(second.events), f"published {second_run}")
    result.check(
        kept == published["new"] + len(second.events),
        f"to-alert-system holds {kept} of the drill's {len(first.events + second.events)} events",
    )
    return result


def drill_alert_replicas_killed(stack: ComposeStack) -> DrillResult:
    """A replica of each alert service SIGKILLed mid-flow: the other takes over, none lost."""
    crossings = Crossings("drill-kill", ALERT_AIRPORTS)
    result = DrillResult(
        "alert replicas killed",
        f"{len(crossings.emails)} crossings published; every process of one Alert System "
        f"replica SIGKILLed at once, of one Alert Notifier replica once {MID_FLOW_EMAILS} "
        f"emails were out (of {stack.alert_replicas} replicas each; the restart policy brings "
        "them back)",
    )
    before = broker_state(stack)
    system, notifier = stack.containers("alert-system")[0], stack.containers("alert-notifier")[0]
    runs = {victim: stack.state(victim)["StartedAt"] for victim in (system, notifier)}
    publish(stack, crossings)
    # Mid-batch when the Alert System holds events it has not acknowledged (either replica).
    held = wait_for_unacknowledged(stack, "to-alert-system")
    killed_at = time.monotonic()
    stack.crash(system)
    in_flight = wait_for_emails(stack, crossings, MID_FLOW_EMAILS)
    stack.crash(notifier)
    back = [
        wait_until_healthy(stack, victim, timeout=180, started_after=runs[victim]) - killed_at
        for victim in (system, notifier)
    ]
    done_at = wait_for_every_email(stack, crossings)
    counts = tally(stack, crossings)
    again = redeliveries(before, broker_state(stack))
    result.figures = [
        str(counts),
        f"at the Alert System's kill: {held} events unacknowledged (by either replica); at "
        f"the notifier's: {in_flight} of {len(crossings.emails)} emails out",
        "redelivered (what the killed replicas held): "
        + ", ".join(f"{subject} {n}" for subject, n in again.items()),
        "all mailed and settled "
        + (f"{done_at - killed_at:.0f} s after the first kill" if done_at else "never"),
        f"killed replicas healthy again {back[0]:.0f} s (Alert System) and {back[1]:.0f} s "
        "(Alert Notifier) after the first kill",
    ]
    result.check(counts.lost == 0, f"{counts.lost} crossings never mailed")
    # A notifier process dies between the mail server's acceptance and its commit only in a
    # window of milliseconds, each of its SMTP_CONNECTIONS senders at most once (docs/design.md,
    # "When an email can still arrive twice"); anything more is a defect.
    senders = NotifierSettings.model_fields["SMTP_CONNECTIONS"].default
    result.check(counts.duplicates <= senders, f"{counts.duplicates} emails sent twice")
    result.check(done_at is not None, "the pipeline did not settle")
    result.check(in_flight < len(crossings.emails), "every email was out before the kill")
    return result


# --- the integration suite ----------------------------------------------------------------


def run_suite(stack: ComposeStack, log: Path) -> DrillResult:
    """Run the integration suite against the stack, through the gateway."""
    result = DrillResult(
        "integration suite",
        f"`pytest -m '{SUITE_DESELECT}' {' '.join(SUITE)}` with UM_URL, DC_URL (the gateway) "
        "and SIM_URL",
    )
    env = {
        **os.environ,
        "UM_URL": stack.user_manager_url,
        "DC_URL": stack.data_collector_url,
        "SIM_URL": stack.simulator_url,
    }
    started = time.monotonic()
    with log.open("w") as output:
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-m",
                SUITE_DESELECT,
                *SUITE,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    summary = log.read_text().strip().splitlines()[-1:] or ["no output"]
    result.figures = [summary[0].strip("= "), f"{time.monotonic() - started:.0f} s"]
    result.check(code == 0, f"pytest exited {code} (log: {log})")
    return result


# --- the run ------------------------------------------------------------------------------

DRILLS: list[Callable[[ComposeStack], DrillResult]] = [
    drill_concurrent_duplicates,
    drill_crash_and_database_restart,
    drill_collection_once_per_period,
    drill_deletes_while_collector_down,
    drill_slow_clients,
    drill_scale_without_restart,
    drill_alert_from_the_collector,
    drill_broker_restart,
    drill_alert_replicas_killed,
    # Last: it leaves the drills' own client (this machine's address) out of allowance for
    # a moment; then the log and the containers as everything left them.
    drill_rate_limit,
    drill_gateway_log_and_containers,
]


def main(argv: list[str] | None = None) -> int:
    """Run everything; print the table; exit 0 when all held (or when there is no engine)."""
    parser = argparse.ArgumentParser(prog="python -m tests.containers.drills", description=__doc__)
    parser.add_argument("--no-suite", action="store_true", help="skip the integration suite")
    parser.add_argument("--only", action="append", default=[], help="run only drills named so")
    args = parser.parse_args(argv)

    problem = engine_problem()
    if problem:
        print(f"make test-containers: no Docker engine answers here ({problem}); nothing was run.")
        return 0
    # docker stop of the run, or a CI timeout: still tear down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = ComposeStack(replicas=REPLICAS, alert_replicas=ALERT_REPLICAS, settings=DRILL_SETTINGS)
    logs = Path(tempfile.mkdtemp(prefix="flight-tracker-containers-"))
    found = versions()
    header = [f"Docker engine {found['engine']}, Compose {found['compose']}"]
    results: list[DrillResult] = []
    try:
        print(f"building and starting {stack.project} (logs: {logs})", flush=True)
        started = time.monotonic()
        stack.build()
        built = time.monotonic() - started
        started = time.monotonic()
        stack.up()
        healthy = stack.wait_healthy()
        up_seconds = time.monotonic() - started
        header.append(
            f"images built in {built:.0f} s; `up --scale user-manager={REPLICAS} --scale "
            f"data-collector={REPLICAS} --scale alert-system={ALERT_REPLICAS} --scale "
            f"alert-notifier={ALERT_REPLICAS}` healthy (every container, every /health ok "
            f"through the gateway) in {up_seconds:.0f} s (waiting {healthy:.0f} s of it)"
        )
        if not args.no_suite:
            print("integration suite through the gateway ...", flush=True)
            results.append(run_suite(stack, logs / "suite.log"))
        for drill in DRILLS:
            if args.only and not any(name in drill.__name__ for name in args.only):
                continue
            print(f"{drill.__name__} ...", flush=True)
            try:
                results.append(drill(stack))
            except Exception as error:  # a drill that breaks is a failed row, not a stop
                results.append(
                    DrillResult(drill.__name__, drill.__doc__ or "", problems=[repr(error)])
                )
            print(f"  {'pass' if results[-1].passed else 'FAIL'}", flush=True)
    except ComposeError as error:
        # The stack never came up (or a rescale failed): say so, with compose's words.
        print(f"make test-containers: the stack failed: {error}", flush=True)
        results.append(
            DrillResult("stack", "build and start", problems=[str(error).splitlines()[0]])
        )
    finally:
        (logs / "compose.log").write_text(stack.compose("logs", "--no-color", check=False).stdout)
        stack.down()
    print("\n" + "\n".join(header) + "\n")
    print(markdown_table(results))
    return 0 if results and all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
