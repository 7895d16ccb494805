"""The flights the simulator knows about, and the OpenSky rules for picking them.

Two kinds of world answer the same question ("which flights were first seen
between these two instants?"): a synthetic one, generated on demand from a seed
so that every answer is the same across endpoints and restarts, and a dataset
one that a test loads when it needs exact control. The selection rules of the
three flights endpoints live here too, so the public API and the ground truth
used by tests cannot drift apart.
"""

import bisect
import functools
import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86400

# The order OpenSky uses in its JSON answers; clients see exactly these keys.
FLIGHT_FIELDS = (
    "icao24",
    "firstSeen",
    "estDepartureAirport",
    "lastSeen",
    "estArrivalAirport",
    "callsign",
    "estDepartureAirportHorizDistance",
    "estDepartureAirportVertDistance",
    "estArrivalAirportHorizDistance",
    "estArrivalAirportVertDistance",
    "departureAirportCandidatesCount",
    "arrivalAirportCandidatesCount",
)

FIRST_SEEN = "first-seen"
CONTAINED = "contained"
ALL_SEMANTICS = (FIRST_SEEN, CONTAINED)
DIRECTIONS = ("arrival", "departure", "all")


@dataclass(frozen=True)
class Airport:
    """An airport of the synthetic world; weight is its mean departures per day."""

    icao: str
    weight: float
    lat: float
    lon: float


# Weights are mean departures per day at density 1.0: hubs are busy, the last
# few Italian regionals are so quiet that some days have no flight at all,
# which is the case a collector most often gets wrong.
AIRPORTS = (
    Airport("KATL", 110, 33.64, -84.43),
    Airport("KORD", 100, 41.98, -87.90),
    Airport("EGLL", 100, 51.47, -0.45),
    Airport("KLAX", 95, 33.94, -118.41),
    Airport("LFPG", 95, 49.01, 2.55),
    Airport("EHAM", 95, 52.31, 4.76),
    Airport("EDDF", 90, 50.03, 8.57),
    Airport("LTFM", 90, 41.26, 28.74),
    Airport("OMDB", 85, 25.25, 55.36),
    Airport("KJFK", 85, 40.64, -73.78),
    Airport("RJTT", 85, 35.55, 139.78),
    Airport("LEMD", 80, 40.47, -3.56),
    Airport("ZBAA", 80, 40.08, 116.58),
    Airport("VIDP", 75, 28.57, 77.10),
    Airport("LIRF", 75, 41.80, 12.25),
    Airport("EDDM", 70, 48.35, 11.79),
    Airport("CYYZ", 70, 43.68, -79.63),
    Airport("WSSS", 70, 1.36, 103.99),
    Airport("VHHH", 65, 22.31, 113.91),
    Airport("LEBL", 65, 41.30, 2.08),
    Airport("SBGR", 60, -23.43, -46.47),
    Airport("YSSY", 60, -33.95, 151.18),
    Airport("LSZH", 55, 47.46, 8.55),
    Airport("LOWW", 55, 48.11, 16.57),
    Airport("EKCH", 55, 55.62, 12.66),
    Airport("EGKK", 50, 51.15, -0.19),
    Airport("ENGM", 50, 60.19, 11.10),
    Airport("EIDW", 50, 53.42, -6.27),
    Airport("LPPT", 45, 38.78, -9.14),
    Airport("ESSA", 45, 59.65, 17.92),
    Airport("LFPO", 40, 48.72, 2.38),
    Airport("LGAV", 40, 37.94, 23.94),
    Airport("EFHK", 40, 60.32, 24.96),
    Airport("LIMC", 40, 45.63, 8.72),
    Airport("FAOR", 35, -26.14, 28.24),
    Airport("LIME", 20, 45.67, 9.70),
    Airport("LIPZ", 18, 45.50, 12.35),
    Airport("LIRN", 18, 40.88, 14.29),
    Airport("LICC", 15, 37.47, 15.07),
    Airport("LIBD", 6, 41.14, 16.76),
    Airport("LIEA", 3, 40.63, 8.29),
    Airport("LIBP", 2, 42.43, 14.18),
    Airport("LIRZ", 1, 43.10, 12.51),
)

# Valid ICAO codes that no synthetic flight ever touches, so tests can count
# on an empty answer (404) without hoping for a quiet day.
ABSENT_AIRPORTS = ("LIRQ", "LIPE", "EGCC", "KSFO")

# Airlines by the first letter of the departure airport's ICAO region, so
# callsigns look like the traffic a user would expect there.
AIRLINES_BY_REGION = {
    "L": ("AZA", "ITY", "RYR", "EZY", "DLH", "AFR", "IBE", "VLG", "WZZ", "SWR", "AUA", "TAP"),
    "E": ("BAW", "EZY", "RYR", "KLM", "DLH", "SAS", "FIN", "EIN", "NAX", "EWG"),
    "K": ("AAL", "DAL", "UAL", "JBU", "SWA"),
    "C": ("ACA", "WJA"),
}
AIRLINES_ELSEWHERE = ("UAE", "THY", "CPA", "JAL", "SIA", "QFA", "TAM", "SAA", "CCA", "AIC")

MIN_FLIGHT_SECONDS = 30 * 60
MAX_FLIGHT_SECONDS = 13 * 3600
CRUISE_KM_PER_HOUR = 800
NULL_CALLSIGN_RATE = 0.03
NULL_ARRIVAL_RATE = 0.03
NULL_DEPARTURE_RATE = 0.02

# A generated day is a few thousand dicts (a few MB); this many days covers a
# run of 2-day queries and a week of ground truth without growing unbounded.
CACHED_DAYS = 16

# Each departure airport owns a slice of the 24-bit address space, so two
# airports can never produce the same (icao24, firstSeen) pair.
ICAO24_BLOCK = (1 << 24) // len(AIRPORTS)


def _distance_km(a, b):
    """Great-circle distance, which sets a plausible flight duration."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371 * math.asin(math.sqrt(h))


def _poisson(rng, mean):
    """Draw a daily flight count; Poisson gives quiet airports days with none."""
    if mean > 30:
        # Knuth's method underflows for large means; the normal law is close enough.
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class SyntheticWorld:
    """Flights generated per (departure airport, UTC day) from a seed.

    Each airport-day has its own RNG seeded from SHA-256 (never ``hash()``,
    which changes between processes), so a flight is the same whichever
    endpoint or process asks for it.
    """

    def __init__(self, seed=42, density=1.0):
        self.seed = seed
        self.density = density
        self.max_duration = MAX_FLIGHT_SECONDS
        self._cum_weights = list(itertools.accumulate(airport.weight for airport in AIRPORTS))
        self._day = functools.lru_cache(maxsize=CACHED_DAYS)(self._generate_day)

    def flights_departing(self, lo, hi):
        """Return the flights with lo <= firstSeen <= hi, sorted by firstSeen."""
        return [
            flight
            for day in range(lo // DAY, hi // DAY + 1)
            for flight in self._day(day)
            if lo <= flight["firstSeen"] <= hi
        ]

    def _generate_day(self, day):
        date = datetime.fromtimestamp(day * DAY, UTC).date().isoformat()
        flights = []
        for index, origin in enumerate(AIRPORTS):
            digest = hashlib.sha256(f"{self.seed}:{origin.icao}:{date}".encode()).digest()
            rng = random.Random(int.from_bytes(digest[:8], "big"))
            seen = set()
            for _ in range(_poisson(rng, origin.weight * self.density)):
                flight = self._generate_flight(rng, index, origin, day * DAY)
                key = (flight["icao24"], flight["firstSeen"])
                if key not in seen:
                    seen.add(key)
                    flights.append(flight)
        flights.sort(key=lambda f: (f["firstSeen"], f["icao24"]))
        return tuple(flights)

    def _generate_flight(self, rng, index, origin, day_start):
        destination = origin
        while destination is origin:
            destination = rng.choices(AIRPORTS, cum_weights=self._cum_weights)[0]
        cruise = _distance_km(origin, destination) / CRUISE_KM_PER_HOUR * 3600
        duration = int((cruise + MIN_FLIGHT_SECONDS) * rng.uniform(0.9, 1.1))
        duration = min(max(duration, MIN_FLIGHT_SECONDS), MAX_FLIGHT_SECONDS)
        first_seen = day_start + rng.randrange(DAY)

        airlines = AIRLINES_BY_REGION.get(origin.icao[0], AIRLINES_ELSEWHERE)
        callsign = f"{rng.choice(airlines)}{rng.randint(1, 9999)}".ljust(8)
        departure = origin.icao if rng.random() >= NULL_DEPARTURE_RATE else None
        arrival = destination.icao if rng.random() >= NULL_ARRIVAL_RATE else None
        return {
            "icao24": f"{index * ICAO24_BLOCK + rng.randrange(ICAO24_BLOCK):06x}",
            "firstSeen": first_seen,
            "estDepartureAirport": departure,
            "lastSeen": first_seen + duration,
            "estArrivalAirport": arrival,
            "callsign": callsign if rng.random() >= NULL_CALLSIGN_RATE else None,
            "estDepartureAirportHorizDistance": rng.randint(50, 6000) if departure else None,
            "estDepartureAirportVertDistance": rng.randint(0, 600) if departure else None,
            "estArrivalAirportHorizDistance": rng.randint(50, 8000) if arrival else None,
            "estArrivalAirportVertDistance": rng.randint(0, 900) if arrival else None,
            "departureAirportCandidatesCount": rng.randint(1, 3) if departure else 0,
            "arrivalAirportCandidatesCount": rng.randint(1, 6) if arrival else 0,
        }


class DatasetWorld:
    """Exactly the flights a test loaded, nothing else."""

    def __init__(self, flights):
        self.flights = sorted(
            (normalise_flight(f) for f in flights), key=lambda f: (f["firstSeen"], f["icao24"])
        )
        self._first_seen = [f["firstSeen"] for f in self.flights]
        self.max_duration = max((f["lastSeen"] - f["firstSeen"] for f in self.flights), default=0)

    def flights_departing(self, lo, hi):
        """Return the flights with lo <= firstSeen <= hi, sorted by firstSeen."""
        start = bisect.bisect_left(self._first_seen, lo)
        stop = bisect.bisect_right(self._first_seen, hi)
        return self.flights[start:stop]


def normalise_flight(flight):
    """Check a loaded flight enough to answer queries, and give it OpenSky's keys.

    Raises ValueError with a message a test author can act on.
    """
    if not isinstance(flight, dict):
        raise ValueError("every flight must be a JSON object")
    if not isinstance(flight.get("icao24"), str):
        raise ValueError("icao24 must be a string")
    for field in ("firstSeen", "lastSeen"):
        value = flight.get(field)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{field} must be an integer (Unix seconds)")
    if flight["lastSeen"] < flight["firstSeen"]:
        raise ValueError("lastSeen must not be before firstSeen")
    for field in ("estDepartureAirport", "estArrivalAirport"):
        if not isinstance(flight.get(field), str | None):
            raise ValueError(f"{field} must be a string or null")
    return {field: flight.get(field) for field in FLIGHT_FIELDS}


def select_flights(world, *, direction, airport, begin, end, now, all_semantics=FIRST_SEEN):
    """Return what OpenSky would answer, both bounds inclusive, sorted by firstSeen.

    A flight exists only once it has landed (``lastSeen <= now``), because
    OpenSky computes flights after the fact.
    """
    # An arrival in [begin, end] may have taken off up to one flight earlier;
    # nothing first seen after now has landed (and now may be a float).
    lo = begin - world.max_duration if direction == "arrival" else begin
    return [
        flight
        for flight in world.flights_departing(lo, min(end, int(now)))
        if flight["lastSeen"] <= now
        and _matches(flight, direction, airport, begin, end, all_semantics)
    ]


def _matches(flight, direction, airport, begin, end, all_semantics):
    if direction == "arrival":
        return flight["estArrivalAirport"] == airport and begin <= flight["lastSeen"] <= end
    if direction == "departure":
        return flight["estDepartureAirport"] == airport and begin <= flight["firstSeen"] <= end
    if not begin <= flight["firstSeen"] <= end:
        return False
    return all_semantics == FIRST_SEEN or flight["lastSeen"] <= end
