"""What this machine can do at best, measured the way the services are measured.

``create_app()`` is a bare Flask app (no hooks, no ORM) served by gunicorn
with the services' own command line (``common.process.launcher.gunicorn_command``):

- ``GET /noop``: an endpoint doing nothing (Flask + gunicorn + HTTP);
- ``GET /select/<n>``: one primary-key SELECT of a user-like row;
- ``POST /insert``: one INSERT of a user-like row and its COMMIT;
- ``GET /page/<n>``: one SELECT of 100 consecutive flight-like rows, the JSON
  array built by PostgreSQL (``json_agg``): the least a page of flights or
  users can cost, as the services build theirs in PostgreSQL too.

Each worker takes connections from a thread-safe psycopg2 pool it creates
after the fork. Connections are in autocommit mode: the SELECT is one round
trip, and the INSERT commits by itself (one round trip, same durability as
INSERT then COMMIT): the cheapest way to do each, as a ceiling should be.
:func:`batched_upsert_rows_per_second` measures the ingest ceiling:
``execute_values`` in pages of 1,000 into a copy of ``flight_data`` with the
same statement shape as the collector (upsert on ``(icao24, first_seen)``).
"""

import itertools
import os
import random
import threading
import time

import psycopg2
from flask import Flask, jsonify
from psycopg2.extras import execute_values
from psycopg2.pool import ThreadedConnectionPool

DATABASE_URL_VARIABLE = "CEILING_DATABASE_URL"
ROWS = 10_000
PAGE_ROWS = 100
UPSERT_PAGE_SIZE = 1_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS ceiling_users (
    email varchar(254) PRIMARY KEY,
    first_name varchar(100) NOT NULL,
    last_name varchar(100) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ceiling_pages (
    n integer PRIMARY KEY,
    icao24 varchar(6) NOT NULL,
    first_seen timestamptz NOT NULL,
    est_departure_airport varchar(8),
    last_seen timestamptz NOT NULL,
    est_arrival_airport varchar(8),
    callsign varchar(8),
    est_departure_airport_horiz_distance integer,
    est_departure_airport_vert_distance integer,
    est_arrival_airport_horiz_distance integer,
    est_arrival_airport_vert_distance integer,
    departure_airport_candidates_count integer,
    arrival_airport_candidates_count integer
)
"""
# The page's fields are the flight's as the Data Collector answers them.
PAGE_QUERY = """
SELECT json_agg(row_to_json(page) ORDER BY page.n)::text FROM (
    SELECT n, icao24, first_seen, est_departure_airport, last_seen, est_arrival_airport,
           callsign, est_departure_airport_horiz_distance, est_departure_airport_vert_distance,
           est_arrival_airport_horiz_distance, est_arrival_airport_vert_distance,
           departure_airport_candidates_count, arrival_airport_candidates_count
    FROM ceiling_pages WHERE n >= %s ORDER BY n LIMIT %s
) AS page
"""


def prepare(database_url: str) -> None:
    """Create the ceiling tables with ``ROWS`` rows each to select from."""
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(SCHEMA)
            cursor.execute("TRUNCATE ceiling_users, ceiling_pages")
            execute_values(
                cursor,
                "INSERT INTO ceiling_users (email, first_name, last_name) VALUES %s",
                [(f"row{i}@example.com", "Mario", "Rossi") for i in range(ROWS)],
                page_size=UPSERT_PAGE_SIZE,
            )
            execute_values(
                cursor,
                "INSERT INTO ceiling_pages VALUES %s",
                [_page_row(i) for i in range(ROWS)],
                page_size=UPSERT_PAGE_SIZE,
            )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE ceiling_users")
            cursor.execute("VACUUM ANALYZE ceiling_pages")
    finally:
        connection.close()


def _page_row(i: int) -> tuple:
    first_seen = int(time.time()) - 8 * 86400 + i * 60
    return (i, f"{i:06x}", _ts(first_seen), "LIRF", _ts(first_seen + 5400), "EGLL", "BNC1234",
            1500, 150, 1800, 120, 1, 2)  # fmt: skip


def create_app() -> Flask:
    """Build the ceiling app (gunicorn serves ``bench.ceiling:create_app()``)."""
    app = Flask(__name__)
    pool: dict[int, ThreadedConnectionPool] = {}
    counter = itertools.count()

    lock = threading.Lock()

    def connection_pool() -> ThreadedConnectionPool:
        # Created in the worker, after gunicorn's fork, like the services' engines.
        pid = os.getpid()
        with lock:
            if pid not in pool:
                pool.clear()
                pool[pid] = ThreadedConnectionPool(1, 10, os.environ[DATABASE_URL_VARIABLE])
            return pool[pid]

    def connection():
        taken = connection_pool().getconn()
        taken.autocommit = True
        return taken

    @app.get("/noop")
    def noop():
        """Do nothing."""
        return {"message": "pong"}

    @app.get("/select/<int:n>")
    def select(n: int):
        """Read one row by primary key."""
        taken = connection()
        try:
            with taken.cursor() as cursor:
                cursor.execute(
                    "SELECT email, first_name, last_name, created_at FROM ceiling_users "
                    "WHERE email = %s",
                    (f"row{n % ROWS}@example.com",),
                )
                row = cursor.fetchone()
        finally:
            connection_pool().putconn(taken)
        return jsonify(email=row[0], first_name=row[1], last_name=row[2], created_at=row[3])

    @app.get("/page/<int:n>")
    def page(n: int):
        """Read 100 consecutive rows as one JSON array built by PostgreSQL."""
        taken = connection()
        try:
            with taken.cursor() as cursor:
                cursor.execute(PAGE_QUERY, (n % (ROWS - PAGE_ROWS), PAGE_ROWS))
                body = cursor.fetchone()[0]
        finally:
            connection_pool().putconn(taken)
        return app.response_class(body + "\n", mimetype="application/json")

    @app.post("/insert")
    def insert():
        """Insert one row and commit."""
        email = f"new{os.getpid()}.{next(counter)}.{time.time_ns()}@example.com"
        taken = connection()
        try:
            with taken.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO ceiling_users (email, first_name, last_name) VALUES (%s, %s, %s)",
                    (email, "Mario", "Rossi"),
                )
        finally:
            connection_pool().putconn(taken)
        return {"message": "created", "email": email}, 201

    return app


def batched_upsert_rows_per_second(database_url: str, *, rows: int) -> float:
    """Upsert ``rows`` flights in pages of 1,000 (one commit each) into a copy of flight_data."""
    rng = random.Random(7)
    base = int(time.time()) - 8 * 86400
    columns = (
        "icao24, first_seen, est_departure_airport, last_seen, est_arrival_airport, callsign, "
        "est_departure_airport_horiz_distance, est_departure_airport_vert_distance, "
        "est_arrival_airport_horiz_distance, est_arrival_airport_vert_distance, "
        "departure_airport_candidates_count, arrival_airport_candidates_count"
    )
    changing = [c.strip() for c in columns.split(",")][2:]
    statement = (
        f"INSERT INTO ceiling_flights ({columns}) VALUES %s "
        "ON CONFLICT (icao24, first_seen) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in changing)
        + " WHERE ("
        + ", ".join(f"ceiling_flights.{c}" for c in changing)
        + ") IS DISTINCT FROM ("
        + ", ".join(f"EXCLUDED.{c}" for c in changing)
        + ")"
    )
    data = [
        (
            f"{i:06x}",
            _ts(base + i),
            "LIRF",
            _ts(base + i + 5400),
            "EGLL",
            "BNC1234",
            rng.randint(0, 3000),
            rng.randint(0, 300),
            rng.randint(0, 3000),
            rng.randint(0, 300),
            1,
            2,
        )
        for i in range(rows)
    ]
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS ceiling_flights")
            cursor.execute("CREATE TABLE ceiling_flights (LIKE flight_data INCLUDING ALL)")
        started = time.perf_counter()
        for first in range(0, rows, UPSERT_PAGE_SIZE):
            with connection, connection.cursor() as cursor:
                page = data[first : first + UPSERT_PAGE_SIZE]
                execute_values(cursor, statement, page, page_size=UPSERT_PAGE_SIZE)
        elapsed = time.perf_counter() - started
        with connection, connection.cursor() as cursor:
            cursor.execute("DROP TABLE ceiling_flights")
    finally:
        connection.close()
    return rows / elapsed


def _ts(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(seconds))
