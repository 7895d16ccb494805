"""Run the whole benchmark against a stack started here, and print (and save) the table.

The stack is the devstack ``LocalStack`` on a temporary directory with
``ephemeral=False``: PostgreSQL keeps its default durability (fsync and
synchronous commit on), unlike the test suite's throw-away server. Every
process runs exactly as ``make run`` runs it; two settings change:
``COLLECT_POLL_SECONDS`` (0.2 s instead of 2 s), so that the ingest figure
measures collection rather than the wait for the worker's next poll, and
``OPENSKY_DAILY_CREDITS``, lifted like the simulator's credits.
"""

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg2
import requests

from bench import alerts, ceiling, loadgen, memory, seed
from bench.alerts import MailClock
from bench.layers import gateway_front, gateway_unavailable, secured_services
from bench.memory import Memory
from bench.processes import service_rss
from bench.report import Round, Row, render
from common.broker.connection import Broker
from common.broker.streams import TO_ALERT_SYSTEM, TO_DATA_COLLECTOR, TO_NOTIFIER, stream_of
from common.process.launcher import gunicorn_command
from devstack.stack import SIMULATOR_CLIENT_ID, LocalStack, StackSettings, free_port, run_sql
from opensky_sim.control import SimulatorControl
from user_manager.config import Settings as UserManagerSettings

RESULTS_DIR = Path(__file__).parent / "results"
DAY = 86400
# Airports the add_interest scenario follows: known ICAO codes that hold no seeded flights,
# so the collection cycles those interests cause never touch the seeded data.
INTEREST_AIRPORTS = (
    "LIRQ", "LIPE", "LIML", "LIMF", "LIPX", "LIRP", "LIEO", "LICA", "LIBR", "LIMJ",
    "EDDH", "EDDK", "EDDL", "EDDS", "EDDT", "LFLL", "LFML", "LFMN", "LFBO", "LEMG",
)  # fmt: skip
# One airport per round of ingest (a round's flights must be new to the collector): known
# ICAO codes with no seeded flights. Also the most rounds a run can have.
INGEST_AIRPORTS = ("LIPQ", "LIPH", "LIPB", "LIPR", "LIPK", "LIPY", "LIPO", "LIPU", "LIRS", "LIRA")
# The airports the flights_for_user user follows: a hub, two busy ones, two quiet ones.
FOR_USER_AIRPORTS = ("EGLL", "LIRF", "LIMC", "LIPZ", "LIRZ")
# Seeded user 0 follows the ingest airport; user 1 these.
FOR_USER_INDEX = 1
# How long the worker may take to settle after the interests scenario, and ingest to finish.
SETTLE_TIMEOUT_SECONDS = 300
# The ingest's interest has a threshold its airport's figure crosses: every cycle that stores
# flights also sends the figure to the Alert System (publishing is on), and one email follows.
INGEST_THRESHOLDS = {"high_value": 1}
# Clients querying while ingest runs: a steady stream that shows the service still answers
# (each client waits 10 ms after every answer: about 100 requests/s in all), not a second
# saturating load competing for the two cores (that would measure how the cores are split;
# two clients that never wait already ask for about all this host answers).
INGEST_QUERY_CONNECTIONS = 2
INGEST_QUERY_PAUSE_MS = 10
# How often the bench looks whether the ingest is done (one single-row read each time).
INGEST_POLL_SECONDS = 0.02
# The scenarios measured again through each layer (authentication): both services, reads,
# a write, a page.
LAYER_SCENARIOS = ("get_user", "create_user", "list_users", "flights_last")
# The durable consumer of each subject of the alerts pipeline.
PIPELINE_CONSUMERS = (
    (TO_ALERT_SYSTEM, "alert_system"),
    (TO_NOTIFIER, "alert_notifier"),
    (TO_DATA_COLLECTOR, "data_collector"),
)
# When the whole stack's memory is measured.
AFTER_START = "after start"
AFTER_ALERTS = "after the alert scenarios"
# Placeholders in a scenario's script arguments, replaced for every wrk run: a new run id
# (create_user's emails and keys must never repeat) and add_interest's first new pair.
FRESH_RUN_ID = "{run}"
NEXT_INTEREST = "{interest}"


@dataclass
class Options:
    """What to run: full benchmark, quick smoke run, or soak."""

    seconds: float = 5.0
    warmup_seconds: float = 1.0
    rounds: int = 3
    connections: int = 32
    flight_rows: tuple[int, ...] = (1_000_000, 5_000_000)
    users: int = 10_000
    replay_keys: int = 1_000
    ingest_flights: int = 50_000
    upsert_rows: int = 100_000
    layer_scenarios: tuple[str, ...] = LAYER_SCENARIOS
    # The gateway runs in a container: never in the suite's smoke run.
    gateway: bool = True
    soak_seconds: float = 0.0
    soak_connections: int = 64
    # The alerts pipeline: rounds of a few crossings each (one new airport per round), and
    # one airport followed by this many seeded users (at most ``users``) crossing at once.
    alert_rounds: int = 100
    alert_crossings_per_round: int = 4
    alert_followers: int = 10_000
    # Only the alert scenarios and the stack's memory (``--only alerts``).
    only_alerts: bool = False
    results_dir: Path | None = RESULTS_DIR

    @classmethod
    def quick(cls) -> "Options":
        """Tiny data, one-second runs, two rounds: every code path runs (the suite's smoke run)."""
        return cls(
            seconds=1,
            warmup_seconds=0,
            rounds=2,
            connections=4,
            flight_rows=(2_000, 4_000),
            users=300,
            replay_keys=10,
            ingest_flights=300,
            upsert_rows=2_000,
            # One scenario of each service: the layer's code path, not its figures.
            layer_scenarios=("get_user", "flights_last"),
            gateway=False,
            alert_rounds=3,
            alert_crossings_per_round=2,
            alert_followers=300,
            results_dir=None,
        )


@dataclass
class Outcome:
    """Everything measured in one run."""

    started: str
    machine: dict
    rounds: int
    seconds: float
    # Every measurement of each ceiling, in order.
    ceilings: dict[str, list[loadgen.LoadResult]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    # (layer, the scenario through it compared with the same scenario without it)
    layers: list[tuple[str, Row]] = field(default_factory=list)
    # (layer, why it was not measured)
    skipped_layers: list[tuple[str, str]] = field(default_factory=list)
    rss: list[tuple[str, str, int, float]] = field(default_factory=list)
    alert_latency: alerts.Latency | None = None
    fan_out: alerts.FanOut | None = None
    # The whole stack's memory, by when it was measured ("after start", ...).
    memory: dict[str, list[Memory]] = field(default_factory=dict)


def _tree_cpu(process: psutil.Process) -> float:
    """User and system CPU seconds of a process and its living children."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def machine_description() -> dict:
    """CPU model, cores, memory and load: what the figures depend on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }


@contextlib.contextmanager
def bench_stack(mail: MailClock | None = None) -> Iterator[LocalStack]:
    """Run a local stack with PostgreSQL's default durability, deleted afterwards.

    With ``mail``, the Alert Notifier sends to that server in this process,
    and the mail catcher ``make run`` starts runs beside it, idle, so that
    the stack's memory is that of ``make run``'s.
    """
    with tempfile.TemporaryDirectory(prefix="flight-tracker-bench-") as tmp:
        extra_env = {
            "COLLECT_POLL_SECONDS": "0.2",
            # The simulator's credits are made endless for the run (a 429 would pause
            # collection for hours); the collector's own daily budget is lifted to match.
            "OPENSKY_DAILY_CREDITS": str(10**9),
        }
        if mail is not None:
            extra_env.update({"SMTP_HOST": mail.host, "SMTP_PORT": str(mail.port)})
        settings = StackSettings.on_free_ports(
            Path(tmp) / "pg",
            simulator=True,
            ephemeral=False,
            log_dir=Path(tmp) / "logs",
            extra_env=extra_env,
        )
        stack = LocalStack(settings)
        try:
            stack.start()
            if mail is not None:
                start_mail_catcher(stack)
            yield stack
        finally:
            stack.stop()


def start_mail_catcher(stack: LocalStack) -> None:
    """Start the mail catcher as ``make run`` does when no mail server is given."""
    stack.mail_catcher_url = f"http://127.0.0.1:{stack.settings.mail_catcher_http_port}/"
    stack._start_mail_catcher()


def _server_uri(stack: LocalStack, database: str) -> str:
    return stack.postgres.get_uri(database)


def _create_database(stack: LocalStack, name: str) -> str:
    connection = psycopg2.connect(_server_uri(stack, "postgres"))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()
    return _server_uri(stack, name)


def _wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@contextlib.contextmanager
def ceiling_server(stack: LocalStack, database_url: str) -> Iterator[str]:
    """Serve the ceiling app with the services' gunicorn command line and worker count."""
    port = free_port()
    env = dict(stack.env, **{ceiling.DATABASE_URL_VARIABLE: database_url})
    services = UserManagerSettings()
    command = gunicorn_command(
        name="bench",
        bind=f"127.0.0.1:{port}",
        workers=services.WEB_WORKERS,
        threads=services.WEB_THREADS,
        timeout=30,
        app="bench.ceiling:create_app()",
    )
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/noop")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Bench:
    """One benchmark run against one stack."""

    def __init__(self, stack: LocalStack, options: Options, mail: MailClock | None = None):
        self.stack = stack
        self.options = options
        # The SMTP server the Alert Notifier sends to (None: the stack's mail catcher).
        self.mail = mail
        self.run_id = uuid.uuid4().hex[:8]
        self.runs = itertools.count()
        self.next_interest = 0
        self.sim = SimulatorControl(stack.simulator_url)
        # As the server's superuser: seeding ends with a CHECKPOINT.
        self.um_db = stack.admin_database_url("USER_MANAGER_DATABASE_URL")
        self.dc_db = stack.admin_database_url("DATA_COLLECTOR_DATABASE_URL")
        self.as_db = stack.admin_database_url("ALERT_SYSTEM_DATABASE_URL")
        self.an_db = stack.admin_database_url("ALERT_NOTIFIER_DATABASE_URL")
        self.ceiling_url = ""
        # The gateway's processes while it runs (their CPU is part of every measurement).
        self.gateway_processes: list[psutil.Process] = []
        self.outcome = Outcome(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=machine_description(),
            rounds=options.rounds,
            seconds=options.seconds,
        )

    # --- helpers ------------------------------------------------------------------------

    def fresh_args(self, args) -> list[str]:
        """Replace a scenario's placeholders: a new run id, the first pair never sent."""
        fresh = {FRESH_RUN_ID: f"{self.run_id}x{next(self.runs)}", NEXT_INTEREST: ""}
        fresh[NEXT_INTEREST] = str(self.next_interest)
        return [fresh.get(arg, arg) for arg in args]

    def wrk(self, url: str, script: str, args, seconds: float, headers) -> loadgen.LoadResult:
        """One wrk run of a scenario, with fresh arguments (:meth:`fresh_args`)."""
        threads = min(loadgen.WRK_THREADS, self.options.connections)
        result = loadgen.run(
            url,
            script,
            args=self.fresh_args(args),
            connections=self.options.connections,
            seconds=seconds,
            headers=headers,
        )
        if NEXT_INTEREST in args:
            # No thread sent more than all the requests, so pairs past this one are new.
            self.next_interest += threads * result.requests
        return result

    def load(
        self, url: str, script: str, args=(), headers: dict[str, str] | None = None
    ) -> tuple[loadgen.LoadResult, tuple[float, ...] | None]:
        """Warm up, then measure; return the result and the CPU ms per request it cost."""
        if self.options.warmup_seconds:
            self.wrk(url, script, args, self.options.warmup_seconds, headers)
        before = self.cpu_seconds()
        result = self.wrk(url, script, args, self.options.seconds, headers)
        after = self.cpu_seconds()
        cpu = None
        if result.requests:
            spent = zip(before, after, strict=True)
            cpu = tuple((end - start) * 1000 / result.requests for start, end in spent)
        return result, cpu

    def cpu_seconds(self) -> tuple[float, float, float]:
        """CPU time used so far by both services' processes, PostgreSQL's, and the gateway's.

        Per request, these tell what a scenario costs whatever else runs on the
        machine (other engineers' test suites change throughput, much less this).
        The gateway's is zero while none runs.
        """
        children = self.stack.supervisor.children
        # The stack's own processes, and the secured fronts' while they run.
        services = sum(
            _tree_cpu(psutil.Process(child.pid))
            for name, child in list(children.items())
            if name.removesuffix("_secured") in ("user_manager", "data_collector")
        )
        pid_file = Path(self.stack.postgres.pgdata) / "postmaster.pid"
        postgres = _tree_cpu(psutil.Process(int(pid_file.read_text().split()[0])))
        gateway = 0.0
        for process in self.gateway_processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                gateway += times.user + times.system
        return services, postgres, gateway

    def progress(self, message: str) -> None:
        """Say what is happening (the full run takes several minutes)."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def row(self, name: str, ceiling_name: str, note: str = "") -> Row:
        """Return the row of scenario ``name``, created on its first round."""
        for row in self.outcome.rows:
            if row.name == name:
                row.note = note or row.note
                return row
        row = Row(name, ceiling_name, note)
        self.outcome.rows.append(row)
        return row

    def interleave(self, reference, blocks) -> None:
        """Measure ``reference``, then each block followed by ``reference`` again.

        ``blocks`` is a list of lists of (row, run): ``run()`` returns a result
        and its CPU cost, and each result of a block is recorded in its row
        against the mean rate of the references measured just before and just
        after the block. Host load that comes and goes then weighs on both
        sides of a ratio.
        """
        before = reference()
        for block in blocks:
            measured = [(row, run()) for row, run in block]
            after = reference()
            mean = (before.rate + after.rate) / 2
            for row, (result, cpu) in measured:
                row.rounds.append(Round(result, mean, cpu))
                self.progress(
                    f"{row.name} ({row.ceiling}): {result.rate:.0f}/s p99 {result.p99_ms:.1f} ms, "
                    f"{result.errors} errors, {result.rate / mean if mean else 0:.0%} "
                    f"of {mean:.0f}/s"
                )
            before = after

    def ceiling(self, name: str):
        """Return a function measuring ceiling ``name`` once (and keeping the measurement)."""
        path, method = {
            "bare Flask": ("/noop", "GET"),
            "one SELECT": ("/select", "GET"),
            "page of 100": ("/page", "GET"),
            "one INSERT": ("/insert", "POST"),
        }[name]

        def measure() -> loadgen.LoadResult:
            result, _ = self.load(self.ceiling_url + path, "ceiling", [method])
            self.outcome.ceilings.setdefault(name, []).append(result)
            return result

        return measure

    def upsert_ceiling(self) -> loadgen.LoadResult:
        """Measure the batched-upsert ceiling once, as a result in rows."""
        rate = ceiling.batched_upsert_rows_per_second(self.dc_db, rows=self.options.upsert_rows)
        rows = self.options.upsert_rows
        result = loadgen.LoadResult(
            requests=rows, seconds=rows / rate, errors=0, p50_ms=0.0, p99_ms=0.0
        )
        self.outcome.ceilings.setdefault("batched upsert", []).append(result)
        return result

    # --- the run ------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Seed, then rounds of every scenario between its ceilings, layers; what was measured."""
        options = self.options
        self.outcome.memory[AFTER_START] = memory.measure(self.stack)
        # The simulator's credits must not run out: a 429 would pause collection for hours.
        self.sim.set_credits(SIMULATOR_CLIENT_ID, limit=10**9, remaining=10**9)
        self.sim.load_dataset([])
        if options.only_alerts:
            self.progress(f"seeding {options.users} users")
            seed.seed_users(self.um_db, count=options.users)
            return self.finish()
        self.progress(f"seeding {options.users} users and {options.flight_rows[0]} flights")
        seed.seed_users(self.um_db, count=options.users)
        seed.seed_flights(self.dc_db, first_row=0, rows=options.flight_rows[0])
        seed.seed_interests(
            self.dc_db, email=seed.seed_user_email(FOR_USER_INDEX), airports=FOR_USER_AIRPORTS
        )
        self.create_replay_users()
        database = _create_database(self.stack, "ceiling")
        ceiling.prepare(database)
        with ceiling_server(self.stack, database) as self.ceiling_url:
            with self.layer_fronts() as fronts:
                for number in range(options.rounds):
                    self.progress(f"round {number + 1} of {options.rounds}")
                    self.ceiling("bare Flask")()
                    self.user_scenarios()
                    self.flight_scenarios(options.flight_rows[0], first=True)
                    self.ingest(options.flight_rows[0], INGEST_AIRPORTS[number], number)
                    self.layers(fronts)
            for previous, rows in zip(options.flight_rows, options.flight_rows[1:], strict=False):
                self.progress(f"seeding flights up to {rows}")
                seed.seed_flights(self.dc_db, first_row=previous, rows=rows - previous)
                for number in range(options.rounds):
                    self.progress(f"round {number + 1} of {options.rounds} at {rows} flights")
                    self.flight_scenarios(rows, first=False)
        self.outcome.rss = service_rss(self.service_pids())
        return self.finish()

    def finish(self) -> Outcome:
        """Run the alert scenarios (when mailing to this process), measure memory; the outcome."""
        if self.mail is not None:
            self.alert_scenarios()
            self.wait_for_pipeline()
            # make run's mail catcher would hold what was sent: it gets the same emails.
            self.progress("sending the emails again to the mail catcher, as make run's would get")
            self.mail.replay("127.0.0.1", self.stack.settings.mail_catcher_smtp_port)
            self.outcome.memory[AFTER_ALERTS] = memory.measure(self.stack)
        self.outcome.machine["load_after"] = [round(x, 2) for x in os.getloadavg()]
        return self.outcome

    def alert_scenarios(self) -> None:
        """Run rounds of a few crossings each, then one airport's thousands of followers at once."""
        options = self.options
        taken = {code for code, _ in seed.AIRPORTS}
        taken.update(INTEREST_AIRPORTS, INGEST_AIRPORTS, FOR_USER_AIRPORTS)
        airports = alerts.scenario_airports(options.alert_rounds + 1, taken)
        self.sim.load_dataset(alerts.dataset(airports, now=int(time.time())))
        self.progress(
            f"alert latency: {options.alert_rounds} rounds of "
            f"{options.alert_crossings_per_round} crossings"
        )
        self.outcome.alert_latency = alerts.latency_rounds(
            self,
            airports[:-1],
            first_user=FOR_USER_INDEX + 1,
            per_round=options.alert_crossings_per_round,
        )
        latency = self.outcome.alert_latency
        self.progress(
            f"alert latency: p50 {latency.percentile(0.5) * 1000:.0f} ms, "
            f"p99 {latency.percentile(0.99) * 1000:.0f} ms over {len(latency.samples)} emails, "
            f"{latency.lost} lost"
        )
        self.wait_for_pipeline()
        fan_out = alerts.fan_out(self, airports[-1], options.alert_followers)
        self.outcome.fan_out = fan_out
        self.progress(
            f"alert fan-out: {fan_out.accepted} of {fan_out.followers} emails accepted, "
            f"the last {fan_out.seconds or 0:.1f} s after the commit"
        )
        self.wait_for_idle_worker()
        self.sim.load_dataset([])

    def events_published(self) -> int:
        """Return how many events the collector has published to the Alert System so far."""
        broker = Broker(self.stack.broker_url, name="bench")
        try:
            return alerts.stream_messages(broker, TO_ALERT_SYSTEM)
        finally:
            broker.close()

    def wait_for_pipeline(self) -> None:
        """Wait until everything committed went all the way: outboxes empty, consumers idle."""
        broker = Broker(self.stack.broker_url, name="bench")
        databases = [self.dc_db, self.as_db, self.an_db]
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        try:
            while time.monotonic() < deadline:
                lags = [
                    broker.consumer_lag(stream_of(subject).name, durable)
                    for subject, durable in PIPELINE_CONSUMERS
                ]
                idle = all(lag and not lag["pending"] and not lag["unacknowledged"] for lag in lags)
                if idle and not any(
                    run_sql(url, "SELECT count(*) FROM broker_outbox")[0][0] for url in databases
                ):
                    return
                time.sleep(0.2)
        finally:
            broker.close()
        raise RuntimeError("the alerts pipeline did not settle")

    @contextlib.contextmanager
    def layer_fronts(self) -> Iterator[list[tuple[str, dict[str, str], dict[str, str] | None]]]:
        """Start what the layers are measured through; yield (layer, base URLs, headers) each.

        The secured fronts always; the gateway when this machine can run it
        (else the report says why not, and the run goes on without it).
        """
        with contextlib.ExitStack() as started:
            tmp = Path(started.enter_context(tempfile.TemporaryDirectory(prefix="ft-bench-")))
            secured = started.enter_context(secured_services(self.stack, tmp))
            fronts = [
                (f"auth ({credential})", secured.base, headers)
                for credential, headers in secured.credentials.items()
            ]
            reason = gateway_unavailable() if self.options.gateway else "not in a quick run"
            if reason is None:
                try:
                    gateway = started.enter_context(gateway_front(self.stack, tmp / "gateway"))
                except RuntimeError as error:
                    reason = str(error)
                else:
                    fronts.append(("gateway", gateway.base, None))
                    self.gateway_processes = gateway.processes()
            if reason is not None:
                self.outcome.skipped_layers.append(("gateway", f"skipped ({reason})"))
            try:
                yield fronts
            finally:
                self.gateway_processes = []

    def service_pids(self) -> dict[str, int]:
        """Return the launcher pid of each service."""
        children = self.stack.supervisor.children
        return {name: children[name].pid for name in ("user_manager", "data_collector")}

    def scenario(self, name: str, base: dict[str, str] | None = None) -> tuple[str, str, list]:
        """Return (URL, Lua script, script arguments) of a request/response scenario.

        ``base`` gives other base URLs for the services (a secured front).
        """
        base = base or {
            "user_manager": self.stack.user_manager_url,
            "data_collector": self.stack.data_collector_url,
        }
        um, dc = base["user_manager"], base["data_collector"]
        users, airports = str(self.options.users), [code for code, _ in seed.AIRPORTS]
        stride = str(min(loadgen.WRK_THREADS, self.options.connections))
        return {
            "create_user": (um, "create_user", [FRESH_RUN_ID]),
            "replay_user": (um, "replay_user", [self.run_id, str(self.options.replay_keys)]),
            "get_user": (um, "get_user", [users]),
            "list_users": (um + "/users", "get_path", []),
            "add_interest": (
                dc,
                "add_interest",
                [users, NEXT_INTEREST, stride, *INTEREST_AIRPORTS],
            ),
            "flights_by_airport": (dc, "airport_path", ["/flights/%s", *airports]),
            "flights_last": (dc, "airport_path", ["/flights/last/%s", *airports]),
            "flights_average": (dc, "airport_path", ["/flights/average/%s?days=7", *airports]),
            "flights_for_user": (
                f"{dc}/flights?email={seed.seed_user_email(FOR_USER_INDEX)}",
                "get_path",
                [],
            ),
        }[name]

    def measurement(self, name: str, *, base=None, headers=None, settle=None):
        """Return a function measuring scenario ``name`` once (then running ``settle``)."""

        def measure():
            url, script, args = self.scenario(name, base)
            measured = self.load(url, script, args, headers)
            if settle:
                settle()
            return measured

        return measure

    def user_scenarios(self) -> None:
        """create_user and add_interest beside one INSERT; replay_user and get_user, one SELECT.

        add_interest's new interests ask the worker for collection cycles: they
        run, and finish, before the INSERT ceiling is measured again.
        """
        note = "with the gRPC user check"
        self.interleave(
            self.ceiling("one INSERT"),
            [
                [(self.row("create_user", "one INSERT"), self.measurement("create_user"))],
                [
                    (
                        self.row("add_interest", "one INSERT", note),
                        self.measurement("add_interest", settle=self.wait_for_idle_worker),
                    )
                ],
            ],
        )

    def flight_scenarios(self, rows: int, *, first: bool) -> None:
        """Measure the reads: one-row ones beside one SELECT, pages beside the page ceiling.

        Beside one SELECT: replay_user and get_user (first size only),
        flights_last, flights_average. Beside the page ceiling: list_users
        (first size only), the first page
        of flights_by_airport, and of flights_for_user (a user following five
        airports).
        """
        label = f"{rows / 1e6:g}M" if rows >= 1e6 else f"{rows}"
        note = f"{rows} flights"
        selects = ["replay_user", "get_user"] if first else []
        pages = ["list_users"] if first else []
        select_blocks = [[(self.row(n, "one SELECT"), self.measurement(n))] for n in selects]
        for name in ("flights_last", "flights_average"):
            row = self.row(f"{name} @{label}", "one SELECT", note)
            select_blocks.append([(row, self.measurement(name))])
        self.interleave(self.ceiling("one SELECT"), select_blocks)
        page_blocks = [
            [(self.row(n, "page of 100", "first page of 100"), self.measurement(n))] for n in pages
        ]
        page_blocks.append(
            [
                (
                    self.row(f"flights_by_airport @{label}", "page of 100", note),
                    self.measurement("flights_by_airport"),
                )
            ]
        )
        note = f"{rows} flights, {len(FOR_USER_AIRPORTS)} airports, with the gRPC user check"
        page_blocks.append(
            [
                (
                    self.row(f"flights_for_user @{label}", "page of 100", note),
                    self.measurement("flights_for_user"),
                )
            ]
        )
        self.interleave(self.ceiling("page of 100"), page_blocks)

    def layers(self, fronts) -> None:
        """Measure each layer scenario plainly, through each front in turn, then plainly again.

        Each layered round is recorded against the mean rate, and the mean CPU
        per request, of the two plain runs around it.
        """
        for name in self.options.layer_scenarios:
            plain = self.measurement(name)
            before = plain()
            measured = [
                (self.layer_row(layer, name), self.measurement(name, base=base, headers=headers)())
                for layer, base, headers in fronts
            ]
            after = plain()
            rate = (before[0].rate + after[0].rate) / 2
            plain_cpu = [sum(cpu) for _result, cpu in (before, after) if cpu]
            reference_cpu = sum(plain_cpu) / len(plain_cpu) if plain_cpu else None
            for row, (result, cpu) in measured:
                row.rounds.append(Round(result, rate, cpu, reference_cpu_ms=reference_cpu))
                share = result.rate / rate if rate else 0
                self.progress(
                    f"{row.name} ({row.ceiling}): {result.rate:.0f}/s p99 {result.p99_ms:.1f} ms,"
                    f" {result.errors} errors, {share:.0%} of {rate:.0f}/s"
                )

    def layer_row(self, layer: str, name: str) -> Row:
        """Return the row of scenario ``name`` through ``layer``, created on its first round."""
        for kind, row in self.outcome.layers:
            if (kind, row.name) == (layer, name):
                return row
        row = Row(name, f"{layer} vs plain")
        self.outcome.layers.append((layer, row))
        return row

    def create_replay_users(self) -> None:
        """Create the users the replay scenario sends again, with the keys it will reuse."""
        url = self.stack.user_manager_url + "/users"

        def create(i: int) -> None:
            body = {
                "email": f"replay.{self.run_id}.{i}@example.com",
                "first_name": "Mario",
                "last_name": "Rossi",
            }
            headers = {"Idempotency-Key": f"replay-{self.run_id}-{i}"}
            response = requests.post(url, json=body, headers=headers, timeout=10)
            response.raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(self.options.replay_keys)))

    def wait_for_idle_worker(self) -> None:
        """Wait until the collection cycles the new interests asked for have all run."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            pending = run_sql(self.dc_db, "SELECT count(*) FROM collection_requests")[0][0]
            state = run_sql(self.dc_db, "SELECT last_cycle_outcome FROM collector_state")[0][0]
            if pending == 0 and state != "running":
                return
            time.sleep(0.2)
        raise RuntimeError("the collector worker did not settle")

    def ingest(self, rows: int, airport: str, number: int) -> None:
        """Between two batched-upsert ceilings: a new interest's N flights, fetched and stored."""
        ingest_row = self.row("ingest (rows/s)", "batched upsert")
        during_row = self.row(
            "flights_last during ingest",
            "-",
            f"{INGEST_QUERY_CONNECTIONS} clients, each pausing {INGEST_QUERY_PAUSE_MS} ms "
            "between requests, while ingesting",
        )
        before = self.upsert_ceiling()
        events = self.events_published()
        result, during = self.ingest_once(airport, number)
        events = self.events_published() - events
        # Its crossing's email and the reports back, before the ceiling is measured again.
        self.wait_for_pipeline()
        after = self.upsert_ceiling()
        ingest_row.rounds.append(Round(result, (before.rate + after.rate) / 2))
        ingest_row.note = (
            f"{result.requests} flights in {result.seconds:.1f} s, {rows} in table; "
            f"publishing on: {events} events to the Alert System"
        )
        during_row.rounds.append(Round(during, 0.0))
        self.progress(
            f"ingest: {result.rate:.0f} rows/s ({result.rate * 2 / (before.rate + after.rate):.0%}"
            f" of batched upsert); flights_last meanwhile p99 {during.p99_ms:.1f} ms, "
            f"{during.errors} errors"
        )

    def ingest_once(self, airport: str, number: int):
        """Time from a new interest in ``airport`` to all of the simulator's N flights committed.

        Returns the ingest as a result in rows, and what the clients querying
        ``/flights/last`` meanwhile measured.
        """
        count = self.options.ingest_flights
        now = int(time.time())
        first_day = now // DAY * DAY - 6 * DAY
        others = [code for code, _ in seed.AIRPORTS]
        flights = []
        for i in range(count):
            first_seen = first_day + (i * 7919) % max(1, now - 4 * 3600 - first_day)
            other = others[i % len(others)]
            departing = i % 2 == 0
            flights.append(
                seed.opensky_flight(
                    # New to the table in every round: an insert, never an update.
                    f"{(number + 1) << 20 | i:06x}",
                    first_seen,
                    first_seen + 5400,
                    airport if departing else other,
                    other if departing else airport,
                    f"ING{i % 10000:04d}",
                )
            )
        self.sim.load_dataset(flights)
        # Queries keep coming while the worker ingests: the service must keep answering.
        queries = loadgen.Background(
            self.stack.data_collector_url,
            "airport_path",
            args=["/flights/last/%s", *others],
            connections=min(INGEST_QUERY_CONNECTIONS, self.options.connections),
            pause_ms=INGEST_QUERY_PAUSE_MS,
        )
        with queries:
            time.sleep(0.5)
            started = time.perf_counter()
            asked_at = time.time()
            response = requests.post(
                self.stack.data_collector_url + "/interests",
                json={
                    "email": seed.seed_user_email(0),
                    "airport_code": airport,
                    **INGEST_THRESHOLDS,
                },
                timeout=10,
            )
            response.raise_for_status()
            self.wait_for_flights(airport, count, cycle_after=asked_at)
            elapsed = time.perf_counter() - started
        self.sim.load_dataset([])
        self.wait_for_idle_worker()
        result = loadgen.LoadResult(
            requests=count, seconds=elapsed, errors=0, p50_ms=0.0, p99_ms=elapsed * 1000
        )
        return result, queries.result

    def wait_for_flights(self, airport: str, count: int, *, cycle_after: float) -> None:
        """Wait until a cycle that finished after ``cycle_after`` left ``count`` flights stored.

        Only the collector's single state row is read on each poll, on one
        connection; the airport's flights are counted once per finished cycle.
        Counting them on every poll, each on a new connection, took CPU from
        the ingest it was timing.
        """
        finished = (
            "SELECT extract(epoch FROM last_cycle_finished_at) FROM collector_state "
            "WHERE last_cycle_finished_at > to_timestamp(%s)"
        )
        stored = (
            "SELECT count(*) FROM flight_data "
            "WHERE est_departure_airport = %s OR est_arrival_airport = %s"
        )
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        counted_after = None  # the finished cycle whose flights were last counted
        watcher = psycopg2.connect(self.dc_db)
        watcher.autocommit = True
        try:
            with watcher.cursor() as cursor:
                while True:
                    cursor.execute(finished, (cycle_after,))
                    row = cursor.fetchone()
                    if row is not None and row[0] != counted_after:
                        counted_after = row[0]
                        cursor.execute(stored, (airport, airport))
                        if cursor.fetchone()[0] >= count:
                            return
                    if time.monotonic() > deadline:
                        raise RuntimeError("ingest did not complete")
                    time.sleep(INGEST_POLL_SECONDS)
        finally:
            watcher.close()


def soak(stack: LocalStack, options: Options) -> dict:
    """Load create_user at ``soak_connections`` clients; measure RSS after 1 min and at the end."""
    bench = Bench(stack, options)
    pids = bench.service_pids()
    load = loadgen.Background(
        stack.user_manager_url,
        "create_user",
        args=[bench.run_id],
        connections=options.soak_connections,
    )
    first_minute = min(60.0, options.soak_seconds / 5)
    with load:
        time.sleep(first_minute)
        rss_first = service_rss(pids)
        time.sleep(max(0.0, options.soak_seconds - first_minute))
    rss_end = service_rss(pids)
    return {"result": load.result, "rss_first": rss_first, "rss_end": rss_end, "at": first_minute}


def save(outcome: Outcome, table: str, options: Options) -> None:
    """Write the table and the raw figures to bench/results/ (ignored by git)."""
    if options.results_dir is None:
        return
    options.results_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (options.results_dir / f"{stamp}.md").write_text(table)

    def rounds(row: Row) -> list[dict]:
        return [{**vars(r.result), "reference_rate": r.reference_rate} for r in row.rounds]

    raw = {
        "started": outcome.started,
        "machine": outcome.machine,
        "ceilings": {k: [vars(r) for r in v] for k, v in outcome.ceilings.items()},
        "rows": [
            {"name": r.name, "ceiling": r.ceiling, "note": r.note, "rounds": rounds(r)}
            for r in outcome.rows
        ],
        "layers": [
            {"layer": layer, "name": r.name, "rounds": rounds(r)} for layer, r in outcome.layers
        ],
        "rss": outcome.rss,
    }
    (options.results_dir / f"{stamp}.json").write_text(json.dumps(raw, indent=1))


def main_run(options: Options) -> str:
    """Run the benchmark (or the soak) on a stack of its own; return the printed table."""
    loadgen.ensure_wrk()
    if options.soak_seconds:
        with bench_stack() as stack:
            seed.seed_users(
                stack.admin_database_url("USER_MANAGER_DATABASE_URL"), count=options.users
            )
            from bench.report import render_soak

            table = render_soak(soak(stack, options), options, machine_description())
    else:
        with alerts.mail_clock() as mail, bench_stack(mail) as stack:
            outcome = Bench(stack, options, mail).run()
        table = render(outcome)
        save(outcome, table, options)
    print(table, flush=True)
    return table
