"""Run the whole benchmark against a stack started here, and print (and save) the table.

The stack is the devstack ``LocalStack`` on a temporary directory with
``ephemeral=False``: PostgreSQL keeps its default durability (fsync and
synchronous commit on), unlike the test suite's throw-away server. Every
process runs exactly as ``make run`` runs it; the only setting changed is
``COLLECT_POLL_SECONDS`` (0.2 s instead of 2 s), so that the ingest figure
measures collection rather than the wait for the worker's next poll.
"""

import contextlib
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

from bench import ceiling, loadgen, seed
from bench.processes import service_rss
from bench.report import Row, render
from common.process.launcher import gunicorn_command
from common.settings import web_threads, web_workers
from devstack.stack import SIMULATOR_CLIENT_ID, LocalStack, StackSettings, free_port, run_sql
from opensky_sim.control import SimulatorControl

RESULTS_DIR = Path(__file__).parent / "results"
DAY = 86400
# Airports the add_interest scenario follows: known ICAO codes that hold no seeded flights,
# so the collection cycles those interests cause never touch the seeded data.
INTEREST_AIRPORTS = (
    "LIRQ", "LIPE", "LIML", "LIMF", "LIPX", "LIRP", "LIEO", "LICA", "LIBR", "LIMJ",
    "EDDH", "EDDK", "EDDL", "EDDS", "EDDT", "LFLL", "LFML", "LFMN", "LFBO", "LEMG",
)  # fmt: skip
INGEST_AIRPORT = "LIPQ"
# The airports the flights_for_user user follows: a hub, two busy ones, two quiet ones.
FOR_USER_AIRPORTS = ("EGLL", "LIRF", "LIMC", "LIPZ", "LIRZ")
# Seeded user 0 follows the ingest airport; user 1 these.
FOR_USER_INDEX = 1
# How long the worker may take to settle after the interests scenario, and ingest to finish.
SETTLE_TIMEOUT_SECONDS = 300
# Clients querying while ingest runs: a steady stream that shows the service still answers,
# not a second saturating load competing for the two cores (that would measure the split).
INGEST_QUERY_CONNECTIONS = 2


@dataclass
class Options:
    """What to run: full benchmark, quick smoke run, or soak."""

    seconds: float = 10.0
    warmup_seconds: float = 2.0
    connections: int = 32
    flight_rows: tuple[int, ...] = (1_000_000, 5_000_000)
    users: int = 10_000
    replay_keys: int = 1_000
    ingest_flights: int = 50_000
    upsert_rows: int = 100_000
    soak_seconds: float = 0.0
    soak_connections: int = 64
    results_dir: Path | None = RESULTS_DIR

    @classmethod
    def quick(cls) -> "Options":
        """Tiny data and one-second runs: proves the scripts work (the test suite's smoke run)."""
        return cls(
            seconds=1,
            warmup_seconds=0,
            connections=4,
            flight_rows=(2_000, 4_000),
            users=200,
            replay_keys=10,
            ingest_flights=300,
            upsert_rows=2_000,
            results_dir=None,
        )


@dataclass
class Outcome:
    """Everything measured in one run."""

    started: str
    machine: dict
    ceilings: dict[str, loadgen.LoadResult] = field(default_factory=dict)
    upsert_rows_per_second: float = 0.0
    rows: list[Row] = field(default_factory=list)
    rss: list[tuple[str, str, int, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
def bench_stack() -> Iterator[LocalStack]:
    """Run a local stack with PostgreSQL's default durability, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="flight-tracker-bench-") as tmp:
        settings = StackSettings.on_free_ports(
            Path(tmp) / "pg",
            simulator=True,
            ephemeral=False,
            log_dir=Path(tmp) / "logs",
            extra_env={"COLLECT_POLL_SECONDS": "0.2"},
        )
        stack = LocalStack(settings)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


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
    command = gunicorn_command(
        name="bench",
        bind=f"127.0.0.1:{port}",
        workers=web_workers(),
        threads=web_threads(),
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

    def __init__(self, stack: LocalStack, options: Options):
        self.stack = stack
        self.options = options
        self.run_id = uuid.uuid4().hex[:8]
        self.sim = SimulatorControl(stack.simulator_url)
        # As the server's superuser: seeding ends with a CHECKPOINT.
        self.um_db = stack.admin_database_url("USER_MANAGER_DATABASE_URL")
        self.dc_db = stack.admin_database_url("DATA_COLLECTOR_DATABASE_URL")
        self.last_cpu_ms: tuple[float, float] | None = None
        self.outcome = Outcome(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=machine_description(),
        )

    # --- helpers ------------------------------------------------------------------------

    def load(
        self, url: str, script: str, args: list[str] = (), *, connections: int | None = None
    ) -> loadgen.LoadResult:
        """Warm up, then measure ``script`` against ``url`` for the configured time."""
        connections = connections or self.options.connections
        if self.options.warmup_seconds:
            loadgen.run(
                url,
                script,
                args=list(args),
                connections=connections,
                seconds=self.options.warmup_seconds,
            )
        before = self.cpu_seconds()
        result = loadgen.run(
            url, script, args=list(args), connections=connections, seconds=self.options.seconds
        )
        after = self.cpu_seconds()
        if result.requests:
            self.last_cpu_ms = tuple(
                (after[i] - before[i]) * 1000 / result.requests for i in range(2)
            )
        return result

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time used so far by both services' processes, and by PostgreSQL's.

        Per request, these tell what a scenario costs whatever else runs on the
        machine (other engineers' test suites change throughput, much less this).
        """
        services = sum(_tree_cpu(psutil.Process(pid)) for pid in self.service_pids().values())
        pid_file = Path(self.stack.postgres.pgdata) / "postmaster.pid"
        postgres = _tree_cpu(psutil.Process(int(pid_file.read_text().split()[0])))
        return services, postgres

    def progress(self, message: str) -> None:
        """Say what is happening (the full run takes several minutes)."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def add(self, name: str, result: loadgen.LoadResult, ceiling_name: str, note: str = "") -> None:
        """Record a scenario's result (and the CPU it cost) beside its ceiling."""
        ceiling_rate = (
            self.outcome.upsert_rows_per_second
            if ceiling_name == "batched upsert"
            else self.outcome.ceilings[ceiling_name].rate
        )
        cpu, self.last_cpu_ms = self.last_cpu_ms, None
        self.outcome.rows.append(Row(name, result, ceiling_name, ceiling_rate, note, cpu))
        self.progress(f"{name}: {result.rate:.0f}/s p99 {result.p99_ms:.1f} ms {note}")

    # --- the run ------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Seed, measure the ceilings, run every scenario; return what was measured."""
        options = self.options
        # The simulator's credits must not run out: a 429 would pause collection for hours.
        self.sim.set_credits(SIMULATOR_CLIENT_ID, limit=10**9, remaining=10**9)
        self.sim.load_dataset([])
        self.progress(f"seeding {options.users} users and {options.flight_rows[0]} flights")
        seed.seed_users(self.um_db, count=options.users)
        seed.seed_flights(self.dc_db, first_row=0, rows=options.flight_rows[0])
        seed.seed_interests(
            self.dc_db, email=seed.seed_user_email(FOR_USER_INDEX), airports=FOR_USER_AIRPORTS
        )
        self.measure_ceilings()
        self.user_scenarios()
        self.flight_scenarios(options.flight_rows[0])
        self.ingest(options.flight_rows[0])
        for previous, rows in zip(options.flight_rows, options.flight_rows[1:], strict=False):
            self.progress(f"seeding flights up to {rows}")
            seed.seed_flights(self.dc_db, first_row=previous, rows=rows - previous)
            self.flight_scenarios(rows)
        self.outcome.rss = service_rss(self.service_pids())
        self.outcome.machine["load_after"] = [round(x, 2) for x in os.getloadavg()]
        return self.outcome

    def service_pids(self) -> dict[str, int]:
        """Return the launcher pid of each service."""
        children = self.stack.supervisor.children
        return {name: children[name].pid for name in ("user_manager", "data_collector")}

    def measure_ceilings(self) -> None:
        """Bare Flask, one SELECT, one INSERT+COMMIT per request; batched upsert rows/s."""
        database = _create_database(self.stack, "ceiling")
        ceiling.prepare(database)
        with ceiling_server(self.stack, database) as url:
            for name, path, method in (
                ("bare Flask", "/noop", "GET"),
                ("one SELECT", "/select", "GET"),
                ("one INSERT", "/insert", "POST"),
            ):
                result = self.load(url + path, "ceiling", [method])
                self.outcome.ceilings[name] = result
                self.progress(f"ceiling {name}: {result.rate:.0f}/s p99 {result.p99_ms:.1f} ms")
        self.outcome.upsert_rows_per_second = ceiling.batched_upsert_rows_per_second(
            self.dc_db, rows=self.options.upsert_rows
        )
        self.progress(f"ceiling batched upsert: {self.outcome.upsert_rows_per_second:.0f} rows/s")

    def scenario(self, name: str) -> tuple[str, str, list[str]]:
        """Return (URL, Lua script, script arguments) of a request/response scenario."""
        um, dc = self.stack.user_manager_url, self.stack.data_collector_url
        users, airports = str(self.options.users), [code for code, _ in seed.AIRPORTS]
        return {
            "create_user": (um, "create_user", [self.run_id]),
            "replay_user": (um, "replay_user", [self.run_id, str(self.options.replay_keys)]),
            "get_user": (um, "get_user", [users]),
            "list_users": (um + "/users", "get_path", []),
            "add_interest": (dc, "add_interest", [users, *INTEREST_AIRPORTS]),
            "flights_by_airport": (dc, "airport_path", ["/flights/%s", *airports]),
            "flights_last": (dc, "airport_path", ["/flights/last/%s", *airports]),
            "flights_average": (dc, "airport_path", ["/flights/average/%s?days=7", *airports]),
            "flights_for_user": (
                f"{dc}/flights?email={seed.seed_user_email(FOR_USER_INDEX)}",
                "get_path",
                [],
            ),
        }[name]

    def measure(self, name: str) -> loadgen.LoadResult:
        """Run scenario ``name`` (warm-up, then the measured run)."""
        url, script, args = self.scenario(name)
        return self.load(url, script, args)

    def user_scenarios(self) -> None:
        """create_user, replay_user, get_user, list_users, add_interest."""
        self.add("create_user", self.measure("create_user"), "one INSERT")
        self.create_replay_users()
        self.add("replay_user", self.measure("replay_user"), "one SELECT")
        self.add("get_user", self.measure("get_user"), "one SELECT")
        note = f"first page of 100, {self.user_count()} users"
        self.add("list_users", self.measure("list_users"), "one SELECT", note=note)
        note = "with the gRPC user check"
        self.add("add_interest", self.measure("add_interest"), "one INSERT", note=note)
        self.wait_for_idle_worker()

    def user_count(self) -> int:
        """How many users the User Manager holds now."""
        return run_sql(self.um_db, "SELECT count(*) FROM users")[0][0]

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

    def flight_scenarios(self, rows: int) -> None:
        """Measure the flight queries: by airport, last, average (7 days), for a user.

        The first pages of flights_by_airport and of flights_for_user (a user
        following five airports).
        """
        label = f"{rows / 1e6:g}M" if rows >= 1e6 else f"{rows}"
        for name in ("flights_by_airport", "flights_last", "flights_average"):
            self.add(f"{name} @{label}", self.measure(name), "one SELECT", note=f"{rows} flights")
        note = f"{rows} flights, {len(FOR_USER_AIRPORTS)} airports, with the gRPC user check"
        self.add(f"flights_for_user @{label}", self.measure("flights_for_user"), "one SELECT", note)

    def ingest(self, rows: int) -> None:
        """Time from a new interest to all of the simulator's N flights committed."""
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
                {
                    "icao24": f"e{i:05x}",
                    "firstSeen": first_seen,
                    "estDepartureAirport": INGEST_AIRPORT if departing else other,
                    "lastSeen": first_seen + 5400,
                    "estArrivalAirport": other if departing else INGEST_AIRPORT,
                    "callsign": f"ING{i % 10000:04d}",
                    "estDepartureAirportHorizDistance": 100,
                    "estDepartureAirportVertDistance": 10,
                    "estArrivalAirportHorizDistance": 200,
                    "estArrivalAirportVertDistance": 20,
                    "departureAirportCandidatesCount": 1,
                    "arrivalAirportCandidatesCount": 2,
                }
            )
        self.sim.load_dataset(flights)
        stored = (
            "SELECT count(*) FROM flight_data "
            "WHERE est_departure_airport = %s OR est_arrival_airport = %s"
        )
        # Queries keep coming while the worker ingests: the service must keep answering.
        queries = loadgen.Background(
            self.stack.data_collector_url,
            "airport_path",
            args=["/flights/last/%s", *others],
            connections=min(INGEST_QUERY_CONNECTIONS, self.options.connections),
        )
        with queries:
            time.sleep(0.5)
            started = time.perf_counter()
            response = requests.post(
                self.stack.data_collector_url + "/interests",
                json={"email": seed.seed_user_email(0), "airport_code": INGEST_AIRPORT},
                timeout=10,
            )
            response.raise_for_status()
            deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
            while run_sql(self.dc_db, stored, (INGEST_AIRPORT, INGEST_AIRPORT))[0][0] < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("ingest did not complete")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
        self.sim.load_dataset([])
        result = loadgen.LoadResult(
            requests=count, seconds=elapsed, errors=0, p50_ms=0.0, p99_ms=elapsed * 1000
        )
        note = f"{count} flights in {elapsed:.1f} s, {rows} in table"
        self.add("ingest (rows/s)", result, "batched upsert", note=note)
        during = queries.result
        self.add(
            "flights_last during ingest",
            during,
            "one SELECT",
            note=f"{INGEST_QUERY_CONNECTIONS} clients while ingesting",
        )


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
    raw = {
        "started": outcome.started,
        "machine": outcome.machine,
        "ceilings": {k: vars(v) for k, v in outcome.ceilings.items()},
        "upsert_rows_per_second": outcome.upsert_rows_per_second,
        "rows": [
            {"name": r.name, **vars(r.result), "ceiling": r.ceiling, "note": r.note}
            for r in outcome.rows
        ],
        "rss": outcome.rss,
    }
    (options.results_dir / f"{stamp}.json").write_text(json.dumps(raw, indent=1))


def main_run(options: Options) -> str:
    """Run the benchmark (or the soak) on a stack of its own; return the printed table."""
    loadgen.ensure_wrk()
    with bench_stack() as stack:
        if options.soak_seconds:
            seed.seed_users(
                stack.admin_database_url("USER_MANAGER_DATABASE_URL"), count=options.users
            )
            from bench.report import render_soak

            table = render_soak(soak(stack, options), options, machine_description())
        else:
            outcome = Bench(stack, options).run()
            table = render(outcome)
            save(outcome, table, options)
    print(table, flush=True)
    return table
