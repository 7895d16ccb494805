"""The alerts pipeline timed end to end: from a cycle's commit to the mail server's acceptance.

Every crossing here is caused by a real collection cycle: followers with
thresholds are stored at the Data Collector for an airport nobody followed
yet, one more follows it through ``POST /interests`` (which asks the worker
for a cycle, as it does for any user), and the cycle fetches the airport's
week from the OpenSky simulator. Each of its commits that brings the airport
a new alert window sends the figure through the collector's outbox,
nats-server, the Alert System (one crossing per follower whose threshold the
figure is beyond) and the Alert Notifier, to :class:`MailClock`, a real SMTP
server in the bench process that notes when it accepted each email.

An email is matched to the event that caused it by its crossing, with
nothing added to the product: the Message-ID names the crossing id (derived
from the interest and the version of its state), and the Alert System keeps,
as the state's ``since``, the ``committed_at`` of the event that started the
condition (the database's clock, read in the cycle's transaction just before
its commit). A sample is the acceptance time minus that moment.

- :func:`latency_rounds`: rounds of a few crossings each, one new airport per
  round, each round mailed before the next begins: what one user sees.
- :func:`fan_out`: one airport followed by thousands of users crossing at
  once; a sampler notes, twice a second, how far each hop got and the CPU each
  process used, which tells the hop that bounds the time.
"""

import contextlib
import itertools
import os
import re
import smtplib
import string
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import psycopg2
import psycopg2.extras
import requests
from aiosmtpd.controller import Controller

from bench import seed
from common.airports import airport_name
from common.broker.connection import Broker
from common.broker.messages import crossing_id
from common.broker.streams import stream_of
from devstack.stack import free_port, run_sql

DAY = 86400
# Flights a day at each airport of these scenarios (half arrivals, half departures) on every
# day of the collector's backfill: every alert window an airport gets has this figure.
FLIGHTS_PER_DAY = 10
# A follower above its upper threshold, or below its lower one, with that figure.
ABOVE = {"high_value": FLIGHTS_PER_DAY - 1}
BELOW = {"low_value": FLIGHTS_PER_DAY + 1}
# Days of flights the simulator serves back from yesterday (the collector's backfill is 7).
DATASET_DAYS = 8
# Past which a round's or the fan-out's emails count as lost.
ROUND_TIMEOUT_SECONDS = 120
FAN_OUT_TIMEOUT_SECONDS = 900
SAMPLE_SECONDS = 0.5
# The first hex digits of the scenarios' icao24s: apart from the seed's and ingest's.
ICAO24_BASE = 0xC00000
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<crossing\.([0-9a-f]+)@", re.IGNORECASE | re.MULTILINE)
# The hops of the pipeline whose CPU the fan-out reports, by (component, role).
HOPS = {
    ("data_collector", "grpc + worker"): "Data Collector worker",
    ("alert_system", "worker"): "Alert System worker",
    ("alert_notifier", "worker"): "Alert Notifier worker",
}


@dataclass(frozen=True)
class Accepted:
    """An email the server accepted: when (Unix seconds), its crossing, its recipients."""

    at: float
    crossing: str | None
    recipients: tuple[str, ...]
    content: bytes


class MailClock:
    """A real SMTP server (aiosmtpd) in this process that notes when it accepted each email.

    Its handler does as little as a server can: it notes the time, finds the
    Message-ID with one regular expression and keeps the raw message, so the
    bench's own CPU weighs little on the pipeline it measures.
    """

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = free_port()
        self._lock = threading.Lock()
        self._accepted: list[Accepted] = []
        self._by_recipient: Counter = Counter()
        self._controller = Controller(self, hostname=self.host, port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        """Note the email and accept it."""
        at = time.time()
        found = MESSAGE_ID.search(envelope.content.partition(b"\r\n\r\n")[0])
        recipients = tuple(envelope.rcpt_tos)
        mail = Accepted(
            at, found.group(1).decode() if found else None, recipients, envelope.content
        )
        with self._lock:
            self._accepted.append(mail)
            self._by_recipient.update(recipients)
        return "250 Accepted"

    def start(self) -> None:
        """Listen."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    def count(self) -> int:
        """How many emails were accepted so far."""
        return len(self._accepted)

    def since(self, first: int) -> list[Accepted]:
        """Return the emails accepted after the first ``first``."""
        with self._lock:
            return self._accepted[first:]

    def received(self, recipients: list[str]) -> int:
        """How many of ``recipients`` got at least one email."""
        with self._lock:
            return sum(1 for recipient in recipients if self._by_recipient[recipient])

    def replay(self, host: str, port: int) -> int:
        """Send every accepted email again to another server (a mail catcher); return how many."""
        mails = self.since(0)
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            for mail in mails:
                smtp.sendmail(
                    "alerts@flight-tracker.localhost", list(mail.recipients), mail.content
                )
        return len(mails)


def scenario_airports(count: int, taken: set[str]) -> list[str]:
    """Return ``count`` known ICAO codes the bench uses nowhere else, always the same ones."""
    codes = (
        "Y" + "".join(letters) for letters in itertools.product(string.ascii_uppercase, repeat=3)
    )
    chosen = [code for code in codes if code not in taken and airport_name(code)]
    if len(chosen) < count:
        raise RuntimeError(f"only {len(chosen)} airports to spare, {count} needed")
    return chosen[:count]


def dataset(airports: list[str], *, now: int) -> list[dict]:
    """Every airport's ``FLIGHTS_PER_DAY`` flights on each of the last ``DATASET_DAYS`` days."""
    flights = []
    serial = itertools.count(ICAO24_BASE)
    yesterday = now // DAY * DAY - DAY
    for airport in airports:
        for back in range(DATASET_DAYS):
            day = yesterday - back * DAY
            for index in range(FLIGHTS_PER_DAY):
                departing = index % 2 == 0
                first_seen = day + 3600 + index * 1800
                flights.append(
                    seed.opensky_flight(
                        f"{next(serial):06x}",
                        first_seen,
                        first_seen + 1800,
                        airport if departing else None,
                        None if departing else airport,
                        f"ALR{index:04d}",
                    )
                )
    return flights


def thresholds(index: int) -> dict[str, int]:
    """Half the followers go above their upper threshold, half below their lower one."""
    return ABOVE if index % 2 == 0 else BELOW


def store_followers(database_url: str, airport: str, users: range) -> None:
    """Store interests of seeded ``users`` in ``airport``, with thresholds, at the collector.

    Straight into its table, as ``bench.seed`` seeds: the users are ones the
    User Manager knows, so the collector's reconciliation keeps them.
    """
    rows = [
        (seed.seed_user_email(user), airport, *_values(thresholds(number)))
        for number, user in enumerate(users)
    ]
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            psycopg2.extras.execute_values(
                cursor,
                "INSERT INTO user_interests (user_email, airport_code, high_value, low_value) "
                "VALUES %s",
                rows,
                page_size=1000,
            )
    finally:
        connection.close()


def _values(given: dict[str, int]) -> tuple[int | None, int | None]:
    return given.get("high_value"), given.get("low_value")


def follow(collector_url: str, airport: str, user: int, number: int) -> None:
    """Follow ``airport`` as seeded user ``user`` through the API: the cycle is asked for."""
    response = requests.post(
        f"{collector_url}/interests",
        json={"email": seed.seed_user_email(user), "airport_code": airport, **thresholds(number)},
        timeout=30,
    )
    response.raise_for_status()


def crossing_moments(database_url: str, airports: list[str]) -> dict[str, float]:
    """Return, by crossing id, the ``committed_at`` of the event that started it (Unix seconds).

    Read from the Alert System's states: each holds, as ``since``, the
    commit moment of the event that started its current condition.
    """
    rows = run_sql(
        database_url,
        "SELECT interest_id, version, extract(epoch FROM since) FROM alert_states "
        "WHERE airport = ANY(%s) AND version > 0",
        (airports,),
    )
    return {crossing_id(i, version): float(at) for i, version, at in rows}


def stream_messages(broker: Broker, subject: str) -> int:
    """Return how many messages the broker keeps on ``subject`` (all it got: none expired)."""
    name = stream_of(subject).name

    async def count(js) -> int:
        return (await js.stream_info(name)).state.messages

    return broker.call(count)


def wait_until(condition, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes; return whether it came true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


@dataclass
class Latency:
    """Latency rounds: every sample in seconds, and the crossings that never arrived."""

    rounds: int
    per_round: int
    samples: list[float] = field(default_factory=list)
    lost: int = 0

    def percentile(self, share: float) -> float:
        """Return the latency under which ``share`` of the samples fall (nearest rank), in s."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def latency_rounds(bench, airports: list[str], *, first_user: int, per_round: int) -> Latency:
    """One round per airport: ``per_round`` followers cross at once; each round mailed in turn."""
    result = Latency(rounds=len(airports), per_round=per_round)
    first_mail = bench.mail.count()
    for number, airport in enumerate(airports):
        start = first_user + number * per_round
        followers = range(start, start + per_round)
        store_followers(bench.dc_db, airport, followers[:-1])
        follow(bench.stack.data_collector_url, airport, followers[-1], per_round - 1)
        emails = [seed.seed_user_email(user) for user in followers]
        wait_until(lambda e=emails: bench.mail.received(e) == len(e), ROUND_TIMEOUT_SECONDS)
        bench.wait_for_idle_worker()
        if number % 10 == 9 or number == len(airports) - 1:
            bench.progress(f"alert latency: {number + 1} rounds of {len(airports)}")
    moments = crossing_moments(bench.as_db, airports)
    for mail in bench.mail.since(first_mail):
        committed = moments.pop(mail.crossing, None)
        if committed is not None:
            result.samples.append(mail.at - committed)
    result.lost = len(airports) * per_round - len(result.samples)
    return result


@dataclass
class Sample:
    """Where the fan-out stood at one moment (seconds since the POST)."""

    at: float
    mailed: int
    evaluated: int
    outbox: int
    cpu: dict[str, float]


@dataclass
class FanOut:
    """The fan-out: followers, what was accepted and when, the timeline, CPU per process."""

    followers: int
    accepted: int = 0
    # Seconds from the collector's commit (committed_at) to the first and the last acceptance.
    first_mail: float | None = None
    seconds: float | None = None
    # Seconds from the commit to when the Alert System's transaction holding every evaluation
    # had committed, and to when its outbox was empty again (every message relayed).
    evaluated: float | None = None
    relayed: float | None = None
    # Cores each process used while the emails were sent (first to last), and the host's
    # busy cores over the same span (every process, ours and others').
    cpu: dict[str, float] = field(default_factory=dict)
    host_busy_cores: float = 0.0
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeline: list[Sample] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Emails accepted per second, from the first to the last."""
        span = (self.seconds or 0.0) - (self.first_mail or 0.0)
        return self.accepted / span if span > 0 else 0.0

    def bound(self) -> str:
        """Say what bounded the emails' rate, from the CPU each process used meanwhile."""
        if not self.cpu:
            return "not measured (too short)"
        busiest, used = max(self.cpu.items(), key=lambda item: item[1])
        ours = sum(self.cpu.values())
        if self.host_busy_cores >= 0.9 * self.cores:
            return (
                f"the host's CPU: {self.host_busy_cores:.2f} of {self.cores} cores busy, "
                f"{max(0.0, self.host_busy_cores - ours):.2f} of them outside this stack; the "
                f"busiest process, the {busiest}, used {used:.2f}"
            )
        if used >= 0.9:
            return f"the {busiest}'s CPU ({used:.2f} cores: its Python threads share one core)"
        return (
            f"waits, not CPU: no process used a whole core (the busiest, the {busiest}, "
            f"{used:.2f}) and {self.cores - self.host_busy_cores:.2f} cores stayed idle"
        )


def _cpu_of(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    seconds = {}
    for name, members in processes.items():
        total = 0.0
        for process in members:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        seconds[name] = total
    return seconds


def _host_busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def pipeline_processes(bench) -> dict[str, list[psutil.Process]]:
    """Return the processes whose CPU tells which hop bounds the fan-out, by name."""
    from bench.memory import stack_processes

    named: dict[str, list[psutil.Process]] = {}
    for process in stack_processes(bench.stack):
        name = HOPS.get((process.component, process.role))
        if name is None:
            name = {
                "postgresql": "PostgreSQL",
                "nats": "nats-server",
            }.get(process.component, f"other ({process.component})")
        with contextlib.suppress(psutil.Error):
            named.setdefault(name, []).append(psutil.Process(process.pid))
    named["bench (its SMTP server, the sampler)"] = [psutil.Process()]
    return named


def fan_out(bench, airport: str, followers: int) -> FanOut:
    """``followers`` users follow ``airport``; its first figure crosses every threshold at once."""
    result = FanOut(followers=followers)
    bench.progress(f"alert fan-out: storing {followers} followers of {airport}")
    store_followers(bench.dc_db, airport, range(followers - 1))
    processes = pipeline_processes(bench)
    first_mail = bench.mail.count()
    watcher = psycopg2.connect(bench.as_db)
    watcher.autocommit = True
    stop = threading.Event()

    def sample(started: float) -> None:
        with watcher.cursor() as cursor:
            while not stop.is_set():
                cursor.execute(
                    "SELECT (SELECT count(*) FROM alert_states WHERE airport = %s AND version > 0),"
                    " (SELECT count(*) FROM broker_outbox)",
                    (airport,),
                )
                evaluated, outbox = cursor.fetchone()
                result.timeline.append(
                    Sample(
                        at=time.time() - started,
                        mailed=bench.mail.count() - first_mail,
                        evaluated=evaluated,
                        outbox=outbox,
                        cpu={**_cpu_of(processes), "host": _host_busy()},
                    )
                )
                stop.wait(SAMPLE_SECONDS)

    started = time.time()
    sampler = threading.Thread(target=sample, args=(started,), daemon=True)
    sampler.start()
    try:
        bench.progress(f"alert fan-out: {followers} followers, the last through POST /interests")
        follow(bench.stack.data_collector_url, airport, followers - 1, followers - 1)
        wait_until(
            lambda: bench.mail.count() - first_mail >= followers, FAN_OUT_TIMEOUT_SECONDS, 0.2
        )
    finally:
        stop.set()
        sampler.join()
        watcher.close()
    moments = crossing_moments(bench.as_db, [airport])
    mails = [mail for mail in bench.mail.since(first_mail) if mail.crossing in moments]
    result.accepted = len({mail.crossing for mail in mails})
    if not mails:
        return result
    committed = min(moments.values())
    result.first_mail = min(mail.at for mail in mails) - committed
    result.seconds = max(mail.at for mail in mails) - committed
    offset = committed - started  # the commit, in the timeline's seconds
    for entry in result.timeline:
        entry.at -= offset
    result.evaluated = next((s.at for s in result.timeline if s.evaluated >= followers), None)
    result.relayed = next(
        (s.at for s in result.timeline if s.evaluated >= followers and s.outbox == 0), None
    )
    mailing = [s for s in result.timeline if result.first_mail <= s.at <= result.seconds]
    if len(mailing) >= 2 and mailing[-1].at > mailing[0].at:
        span = mailing[-1].at - mailing[0].at
        used = {name: mailing[-1].cpu[name] - mailing[0].cpu[name] for name in mailing[0].cpu}
        result.host_busy_cores = used.pop("host") / span
        result.cpu = {name: seconds / span for name, seconds in used.items()}
    return result


@contextlib.contextmanager
def mail_clock() -> Iterator[MailClock]:
    """Run a :class:`MailClock` for the duration of the block."""
    clock = MailClock()
    clock.start()
    try:
        yield clock
    finally:
        clock.stop()
