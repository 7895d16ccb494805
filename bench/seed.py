"""Load realistic rows straight into the services' databases with COPY.

Flights: ~50 airports with OpenSky-like skew (a hub sees a hundred times the
traffic of a regional airport), first seen uniformly over the last 30 days
and stored roughly in time order (as collection appends them), each flight
between two of those airports. Every (airport, direction, day)
of the window is marked as collected in ``collected_days``, so averages have
coverage. Users: ``seed000000@example.com`` ... with unique tax codes;
interests, for the scenario that lists a user's flights.

Rows are generated in Python and streamed to COPY through a file-like object,
so PostgreSQL writes while Python generates. ``python -m bench.seed`` loads
into any database given by URL.
"""

import argparse
import io
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg2

DAY = 86400
WINDOW_DAYS = 30
# (ICAO, relative daily traffic): the simulator's world plus a few more, hubs first.
AIRPORTS = (
    ("KATL", 110), ("KORD", 100), ("EGLL", 100), ("KLAX", 95), ("LFPG", 95), ("EHAM", 95),
    ("EDDF", 90), ("LTFM", 90), ("OMDB", 85), ("KJFK", 85), ("RJTT", 85), ("LEMD", 80),
    ("ZBAA", 80), ("VIDP", 75), ("LIRF", 75), ("EDDM", 70), ("CYYZ", 70), ("WSSS", 70),
    ("VHHH", 65), ("LEBL", 65), ("SBGR", 60), ("YSSY", 60), ("LSZH", 55), ("LOWW", 55),
    ("EKCH", 55), ("EGKK", 50), ("ENGM", 50), ("EIDW", 50), ("LPPT", 45), ("ESSA", 45),
    ("LFPO", 40), ("LGAV", 40), ("EFHK", 40), ("LIMC", 40), ("FAOR", 35), ("KDFW", 35),
    ("KDEN", 30), ("KSFO", 30), ("KSEA", 25), ("EGCC", 25), ("LEPA", 20), ("LIME", 20),
    ("LIPZ", 18), ("LIRN", 18), ("LICC", 15), ("EPWA", 10), ("LIBD", 6), ("LIEA", 3),
    ("LIBP", 2), ("LIRZ", 1),
)  # fmt: skip
FLIGHT_COPY_COLUMNS = (
    "icao24, first_seen, est_departure_airport, last_seen, est_arrival_airport, callsign, "
    "est_departure_airport_horiz_distance, est_departure_airport_vert_distance, "
    "est_arrival_airport_horiz_distance, est_arrival_airport_vert_distance, "
    "departure_airport_candidates_count, arrival_airport_candidates_count"
)
# Odd, so multiplying by it modulo 2**24 is a bijection: row i gets its own icao24.
ICAO24_SCRAMBLE = 2654435761
CHUNK_ROWS = 20_000


class _Stream(io.RawIOBase):
    """A read-only file over generated text chunks, for ``copy_expert``."""

    def __init__(self, chunks: Iterator[str]):
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk.encode()
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _flight_chunks(first_row: int, rows: int, now: int, rng: random.Random) -> Iterator[str]:
    codes = [code for code, _ in AIRPORTS]
    weights = [weight for _, weight in AIRPORTS]
    start = now - WINDOW_DAYS * DAY
    # Rows go in roughly in time order, as a collector appending day after day stores them.
    step = (WINDOW_DAYS * DAY - 12 * 3600) / max(rows, 1)
    lines: list[str] = []
    for n, i in enumerate(range(first_row, first_row + rows)):
        origin, destination = rng.choices(codes, weights, k=2)
        if origin == destination:
            destination = codes[(codes.index(origin) + 1) % len(codes)]
        duration = rng.randint(30, 720) * 60
        first_seen = min(start + int(n * step) + rng.randint(0, 600), now - duration)
        icao24 = f"{(i * ICAO24_SCRAMBLE) % (1 << 24):06x}"
        lines.append(
            f"{icao24}\t{_ts(first_seen)}\t{origin}\t{_ts(first_seen + duration)}\t"
            f"{destination}\tBNC{i % 10000:04d}\t{rng.randint(0, 3000)}\t{rng.randint(0, 300)}\t"
            f"{rng.randint(0, 3000)}\t{rng.randint(0, 300)}\t1\t{rng.randint(0, 3)}\n"
        )
        if len(lines) == CHUNK_ROWS:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)


def _ts(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def seed_flights(database_url: str, *, first_row: int, rows: int, now: int | None = None) -> None:
    """COPY ``rows`` flights (row numbers from ``first_row``) and mark the window collected."""
    now = now or int(datetime.now(UTC).timestamp())
    rng = random.Random(first_row)

    def load(cursor) -> None:
        cursor.copy_expert(
            f"COPY flight_data ({FLIGHT_COPY_COLUMNS}) FROM STDIN",
            _Stream(_flight_chunks(first_row, rows, now, rng)),
            size=1 << 20,
        )
        _mark_collected(cursor, now)

    _load_then_settle(database_url, "flight_data", load)


def _load_then_settle(database_url: str, table: str, load) -> None:
    """Run ``load(cursor)`` in one transaction, then VACUUM ANALYZE ``table`` and checkpoint."""
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            load(cursor)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")
            # Write the loaded pages now, not during the measurements that follow.
            cursor.execute("CHECKPOINT")
    finally:
        connection.close()


def _mark_collected(cursor, now: int) -> None:
    """Mark every seeded airport, direction and day of the window as fetched (settled)."""
    today = datetime.fromtimestamp(now, UTC).date()
    now_at = datetime.fromtimestamp(now, UTC)
    rows = []
    for code, _ in AIRPORTS:
        for direction in ("arrival", "departure"):
            for back in range(WINDOW_DAYS + 1):
                day: date = today - timedelta(days=back)
                day_end = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
                    seconds=DAY - 1
                )
                until = min(day_end, now_at)
                rows.append(f"{code}\t{direction}\t{day}\t{until}\t{now_at}\n")
    cursor.execute("CREATE TEMP TABLE seed_marks (LIKE collected_days) ON COMMIT DROP")
    cursor.copy_expert("COPY seed_marks FROM STDIN", io.StringIO("".join(rows)))
    cursor.execute(
        "INSERT INTO collected_days SELECT * FROM seed_marks "
        "ON CONFLICT (airport_code, direction, day) DO UPDATE "
        "SET fetched_until = EXCLUDED.fetched_until, fetched_at = EXCLUDED.fetched_at"
    )


def opensky_flight(
    icao24: str,
    first_seen: int,
    last_seen: int,
    departure: str | None,
    arrival: str | None,
    callsign: str,
) -> dict:
    """Return a flight as OpenSky's flights endpoints answer it (for the simulator's dataset)."""
    return {
        "icao24": icao24,
        "firstSeen": first_seen,
        "estDepartureAirport": departure,
        "lastSeen": last_seen,
        "estArrivalAirport": arrival,
        "callsign": callsign,
        "estDepartureAirportHorizDistance": 100,
        "estDepartureAirportVertDistance": 10,
        "estArrivalAirportHorizDistance": 200,
        "estArrivalAirportVertDistance": 20,
        "departureAirportCandidatesCount": 1,
        "arrivalAirportCandidatesCount": 2,
    }  # fmt: skip


def seed_interests(database_url: str, *, email: str, airports: tuple[str, ...]) -> None:
    """Make ``email`` follow ``airports`` in the Data Collector (already collected: no cycle)."""
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO user_interests (user_email, airport_code) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [(email, airport) for airport in airports],
            )
    finally:
        connection.close()


def seed_user_email(index: int) -> str:
    """Return the email of seeded user ``index`` (scenarios address users by index)."""
    return f"seed{index:06d}@example.com"


def seed_users(database_url: str, *, count: int) -> None:
    """COPY ``count`` users (``seed_user_email(0..count-1)``) into the User Manager's table."""
    lines = "".join(
        f"{seed_user_email(i)}\tMario\tRossi\tSEED{i:06d}\tIT60X0542811101000000123456\t"
        f"{datetime.now(UTC).isoformat()}\n"
        for i in range(count)
    )
    columns = "email, first_name, last_name, tax_code, iban, created_at"
    _load_then_settle(
        database_url,
        "users",
        lambda cursor: cursor.copy_expert(f"COPY users ({columns}) FROM STDIN", io.StringIO(lines)),
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.seed --flights N URL`` or ``--users N URL``."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--flights", type=int, default=0, help="flights to add")
    parser.add_argument("--first-row", type=int, default=0, help="row number of the first flight")
    parser.add_argument("--users", type=int, default=0, help="users to add")
    args = parser.parse_args(argv)
    if args.flights:
        seed_flights(args.database_url, first_row=args.first_row, rows=args.flights)
    if args.users:
        seed_users(args.database_url, count=args.users)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
