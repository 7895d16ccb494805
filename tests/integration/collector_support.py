"""Helpers for the collection tests: follow airports, run cycles, compare with the simulator."""

import functools
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg2

from common.broker.connection import Broker
from common.broker.streams import TO_ALERT_SYSTEM
from data_collector.collection.lock import COLLECTION_LOCK_ID
from tests.integration.alerts_support import stream_payloads
from tests.utils import Api, create_user, run_sql, wait_until

DAY = 86400
# A cycle over a handful of airports takes well under a second on the simulator;
# this leaves room for retries, injected timeouts and a loaded CI machine.
CYCLE_TIMEOUT = 45.0


def iso(seconds: int) -> str:
    """Format Unix seconds as the API does."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    """Parse an API timestamp to Unix seconds."""
    return datetime.fromisoformat(value).timestamp()


def today_start() -> int:
    """Midnight UTC today, Unix seconds."""
    return int(time.time()) // DAY * DAY


def as_api(flight: dict) -> dict:
    """Convert an OpenSky flight object into the API's flight shape."""
    return {
        "icao24": flight["icao24"],
        "first_seen": iso(flight["firstSeen"]),
        "est_departure_airport": flight["estDepartureAirport"],
        "last_seen": iso(flight["lastSeen"]),
        "est_arrival_airport": flight["estArrivalAirport"],
        "callsign": (flight["callsign"] or "").strip() or None,
        "est_departure_airport_horiz_distance": flight["estDepartureAirportHorizDistance"],
        "est_departure_airport_vert_distance": flight["estDepartureAirportVertDistance"],
        "est_arrival_airport_horiz_distance": flight["estArrivalAirportHorizDistance"],
        "est_arrival_airport_vert_distance": flight["estArrivalAirportVertDistance"],
        "departure_airport_candidates_count": flight["departureAirportCandidatesCount"],
        "arrival_airport_candidates_count": flight["arrivalAirportCandidatesCount"],
    }


def make_flight(icao24: str, dep: str | None, arr: str | None, first_seen: int, minutes: int = 90):
    """Return an OpenSky flight object for a loaded dataset."""
    return {
        "icao24": icao24,
        "firstSeen": first_seen,
        "estDepartureAirport": dep,
        "lastSeen": first_seen + minutes * 60,
        "estArrivalAirport": arr,
        "callsign": f"TST{icao24[-4:].upper()}".ljust(8),
        "estDepartureAirportHorizDistance": 100 if dep else None,
        "estDepartureAirportVertDistance": 10 if dep else None,
        "estArrivalAirportHorizDistance": 200 if arr else None,
        "estArrivalAirportVertDistance": 20 if arr else None,
        "departureAirportCandidatesCount": 1 if dep else 0,
        "arrivalAirportCandidatesCount": 2 if arr else 0,
    }


class Collector:
    """The collection stack seen by a test: REST clients, the simulator, cycle helpers."""

    def __init__(self, stack, sim):
        self.stack = stack
        self.sim = sim
        self.um = Api(stack.user_manager_url)
        self.dc = Api(stack.data_collector_url)

    @contextmanager
    def paused(self):
        """Hold the collection lock, so cycles asked for meanwhile run once it is released."""
        connection = psycopg2.connect(self.stack.database_urls["DATA_COLLECTOR_DATABASE_URL"])
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (COLLECTION_LOCK_ID,))
            yield
        finally:
            connection.rollback()
            connection.close()

    @functools.cached_property
    def broker(self) -> Broker:
        """A client of the stack's broker, to read what the collector published."""
        return Broker(self.stack.broker_url, name="collector-test")

    def close(self) -> None:
        """Close the broker's connection, if a test opened it."""
        if "broker" in self.__dict__:
            self.broker.close()

    def published(self, kind: str, interest_id: int | None = None) -> list[dict]:
        """The ``to-alert-system`` events of ``kind`` the broker keeps (naming ``interest_id``).

        Once the outbox is empty: the relay deletes a message only after the
        broker stored it, so everything committed so far is in the stream.
        """
        wait_until(lambda: self.sql("SELECT count(*) FROM broker_outbox") == [(0,)])
        events = [e for e in stream_payloads(self.broker, TO_ALERT_SYSTEM) if e["kind"] == kind]
        if interest_id is None:
            return events
        if kind == "removed":
            return [e for e in events if interest_id in e["interest_ids"]]
        return [e for e in events if interest_id in {f["interest_id"] for f in e["followers"]}]

    def interest_id(self, email: str, airport: str) -> int:
        """The id the collector gave a user's interest in an airport."""
        ((found,),) = self.sql(
            "SELECT id FROM user_interests WHERE user_email = %s AND airport_code = %s",
            (email, airport),
        )
        return found

    def sql(self, statement: str, params=None) -> list[tuple]:
        """Run one statement on the collector's database (tests that inspect or reset state)."""
        return run_sql(self.stack.database_urls["DATA_COLLECTOR_DATABASE_URL"], statement, params)

    def last_cycle(self) -> dict:
        """The ``last_cycle`` part of ``GET /health``."""
        response = self.dc.get("/health")
        assert response.status_code == 200, response.text
        return response.json()["opensky"]["last_cycle"]

    def wait_for_cycle(self, after: float, timeout: float = CYCLE_TIMEOUT) -> dict:
        """Wait for a cycle that started after ``after`` (Unix seconds) to finish."""

        def finished():
            cycle = self.last_cycle()
            started, done = cycle["started_at"], cycle["finished_at"]
            if started and done and parse_iso(started) > after:
                return cycle
            return None

        return wait_until(finished, timeout=timeout, interval=0.1)

    def wait_until_settled(self, timeout: float = CYCLE_TIMEOUT) -> dict:
        """Wait until no range waits for its retry and no cycle runs; return the health's opensky.

        A cycle clears a range's retry as soon as it stores that range, while it may
        still be fetching others: what is stored is whole only once it has finished.
        """

        def settled():
            response = self.dc.get("/health")
            assert response.status_code == 200, response.text
            opensky = response.json()["opensky"]
            cycle = opensky["last_cycle"]
            started, done = cycle["started_at"], cycle["finished_at"]
            idle = started is None or (done is not None and parse_iso(done) >= parse_iso(started))
            return opensky if idle and opensky["retries"]["waiting"] == 0 else None

        return wait_until(settled, timeout=timeout, interval=0.1)

    def follow_without_waiting(self, *airports: str) -> str:
        """Make a new user follow ``airports``; return the user's email."""
        email = create_user(self.um)
        for airport in airports:
            response = self.dc.post("/interests", json={"email": email, "airport_code": airport})
            assert response.status_code == 201, response.text
        return email

    def follow(self, *airports: str) -> dict:
        """Make a new user follow ``airports`` and wait for the one cycle that collects them all."""
        with self.paused():
            asked_at = time.time()
            self.follow_without_waiting(*airports)
        return self.wait_for_cycle(asked_at)

    def run_cycle(self) -> dict:
        """Ask for a cycle through the ops endpoint and wait for it."""
        asked_at = time.time()
        response = self.dc.post("/collection/runs")
        assert response.status_code == 202, response.text
        return self.wait_for_cycle(asked_at)

    def stored(self, airport: str, flight_type: str | None = None, **window: int) -> list[dict]:
        """Every stored flight of the airport through the API, following the Link header.

        ``since``/``until`` (Unix seconds) limit the flights as the API does.
        """
        params = {"limit": "1000", **{name: str(value) for name, value in window.items()}}
        if flight_type:
            params["type"] = flight_type
        response = self.dc.get(f"/flights/{airport}", params=params)
        items = []
        while True:
            assert response.status_code == 200, response.text
            items.extend(response.json())
            if "next" not in response.links:
                return items
            response = self.dc.session.get(response.links["next"]["url"], timeout=10)

    def flight_calls(self) -> list[dict]:
        """The simulator's log of flights requests, without token traffic.

        Resetting the simulator between tests invalidates the collector's cached
        token, so a cycle may open with a 401 and a renewal; those are left out
        too (the expired-token test reads the whole log).
        """
        return [
            call
            for call in self.sim.calls()
            if call["endpoint"] != "token" and (call["status"] != 401 or call["injected"])
        ]


def without_type(items: list[dict]) -> list[dict]:
    """Drop the API's ``type`` field so items compare with OpenSky flights."""
    return [{k: v for k, v in item.items() if k != "type"} for item in items]


def keyed(flights: list[dict]) -> dict:
    """Index API-shaped flights by (icao24, first_seen)."""
    return {(f["icao24"], f["first_seen"]): f for f in flights}


def sample_dataset() -> list[dict]:
    """Flights at LIRF and LIMC over the collected window (two past days and today).

    Includes a flight that takes off on one day and lands on the next, flights
    with an unknown airport, and (unless the day has just begun) flights today.
    """
    d0 = today_start()
    flights = [
        make_flight("a00001", "LIRF", "LIMC", d0 - 2 * DAY + 3600),
        make_flight("a00002", "LIMC", "LIRF", d0 - 2 * DAY + 7200),
        make_flight("a00003", "EGLL", "LIRF", d0 - DAY - 1800, minutes=120),  # lands next day
        make_flight("a00004", "LIRF", "EGLL", d0 - DAY + 5 * 3600),
        make_flight("a00005", "LIRF", None, d0 - DAY + 8 * 3600),
        make_flight("a00006", None, "LIRF", d0 - DAY + 9 * 3600),
        make_flight("a00007", "LIMC", "LIRF", d0 - DAY + 10 * 3600),
        make_flight("a00008", "LIRF", "LIMC", d0 - DAY + 11 * 3600),
    ]
    elapsed = int(time.time()) - d0
    if elapsed > 1200:  # today: flights that have landed already
        flights += [
            make_flight("a00009", "LIRF", "LIMC", d0 + elapsed // 4, minutes=elapsed // 240),
            make_flight("a0000a", "LIMC", "LIRF", d0 + elapsed // 3, minutes=elapsed // 240),
        ]
    return flights


def expected(flights: list[dict], airport: str, direction: str) -> dict:
    """The flights OpenSky would answer for the airport and direction over the window."""
    begin = today_start() - 2 * DAY
    if direction == "arrival":
        chosen = [
            f for f in flights if f["estArrivalAirport"] == airport and f["lastSeen"] >= begin
        ]
    else:
        chosen = [
            f for f in flights if f["estDepartureAirport"] == airport and f["firstSeen"] >= begin
        ]
    return keyed([as_api(f) for f in chosen])


def assert_complete(collector: "Collector", flights: list[dict], airports=("LIRF",)) -> None:
    """Every flight of the dataset at the airports is stored once, as served."""
    for airport in airports:
        for direction, flight_type in (("arrival", "arrivals"), ("departure", "departures")):
            items = without_type(collector.stored(airport, flight_type))
            assert len(items) == len(keyed(items)), "a flight is stored twice"
            assert keyed(items) == expected(flights, airport, direction), (airport, direction)
    duplicates = collector.sql(
        "SELECT count(*) FROM (SELECT 1 FROM flight_data GROUP BY icao24, first_seen "
        "HAVING count(*) > 1) AS d"
    )
    assert duplicates == [(0,)]
