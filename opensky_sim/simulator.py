"""The simulator's state and OpenSky's rules, kept apart from HTTP.

Everything a client can observe (tokens, credits, the sim clock, injected
failures, the call log) lives in one ``Simulator`` guarded by one lock, so a
threaded server sees consistent state. Views in ``app.py`` only translate
between HTTP and the ``Answer`` objects returned here.
"""

import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace

from opensky_sim.world import (
    ALL_SEMANTICS,
    DAY,
    DIRECTIONS,
    FIRST_SEEN,
    FLIGHT_FIELDS,
    DatasetWorld,
    SyntheticWorld,
    select_flights,
)

ANONYMOUS = "anonymous"
TOKEN_PATH = "/auth/realms/opensky-network/protocol/openid-connect/token"
FLIGHTS_PATH = "/api/flights/"

# OpenSky's documented limits on one flights request.
MAX_AIRPORT_INTERVAL = 2 * DAY
MAX_ALL_INTERVAL = 2 * 3600

AIRPORT_PATTERN = re.compile(r"[A-Za-z0-9]{4}")
UNSIGNED_INT_PATTERN = re.compile(r"[0-9]+")

# A well-formed flight; the "out_of_range" variant spoils one value of it per copy.
_GOOD_FLIGHT = dict(
    zip(
        FLIGHT_FIELDS,
        ("4b1805", 1700000000, "LSZH", 1700003600, "LIRF", "SWR1234 ", 500, 50, 700, 60, 1, 2),
        strict=True,
    )
)
# Right JSON types, values no database column or datetime can hold.
OUT_OF_RANGE_VALUES = (
    {"estDepartureAirportHorizDistance": 2**31},  # beyond a 32-bit integer
    {"callsign": "SWR\u00001234"},  # NUL, which PostgreSQL text refuses
    {"firstSeen": 10**12, "lastSeen": 10**12 + 60},  # year 33658
    {"lastSeen": 1_699_999_999},  # lands before it took off
    {"icao24": "4b18zz"},  # not 24 bits in hex
    {"estArrivalAirport": "LIRF-ROME"},  # longer than any airport code
)

# Bodies of injected "malformed" answers: the ways a body can be wrong that a
# client must survive without losing what it already stored.
MALFORMED_FLIGHTS = {
    "truncated": '[{"icao24": "4b1805", "firstSeen": 17',
    "not_a_list": '{"message": "Internal error, please retry"}',
    "bad_items": '[{"icao24": 12345, "firstSeen": "yesterday"}, "not an object", null]',
    "out_of_range": json.dumps([dict(_GOOD_FLIGHT, **spoiled) for spoiled in OUT_OF_RANGE_VALUES]),
}
MALFORMED_TOKEN = {
    "truncated": '{"access_token": "eyJhbGciOi',
    "not_a_list": '["not", "an", "object"]',
    "bad_items": '{"access_token": null, "expires_in": "soon", "token_type": "Bearer"}',
    "out_of_range": '{"access_token": "eyJhbGciOi", "expires_in": -1800, "token_type": "Bearer"}',
}


@dataclass(frozen=True)
class Settings:
    """What the simulator is started with; defaults match the CLI's."""

    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    seed: int = 42
    density: float = 1.0
    token_lifetime: int = 1800
    anonymous_credits: int = 400
    user_credits: int = 4000
    all_semantics: str = FIRST_SEEN

    def __post_init__(self):
        if self.all_semantics not in ALL_SEMANTICS:
            raise ValueError(f"all_semantics must be one of {', '.join(ALL_SEMANTICS)}")
        if self.density < 0 or self.token_lifetime <= 0:
            raise ValueError("density must be >= 0 and token_lifetime > 0")


@dataclass
class Answer:
    """One HTTP answer, plus what the call log records about it."""

    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict = field(default_factory=dict)
    client: str | None = None
    cost: int = 0


@dataclass
class Bucket:
    """A client's daily credit budget; ``day`` is the sim UTC day it counts."""

    limit: int
    used: int = 0
    day: int = 0

    @property
    def remaining(self):
        """Credits left today, never shown as negative."""
        return max(0, self.limit - self.used)


def request_cost(begin, end, now):
    """Credits OpenSky charges for a flights request over [begin, end]."""
    if begin >= now - DAY:
        return 4
    partitions = end // DAY - begin // DAY + 1
    if partitions <= 2:
        return 30
    if partitions <= 10:
        return 60 * partitions
    if partitions <= 25:
        return 480 * partitions
    return 960 * partitions


def parse_query(direction, args, *, enforce_limits=True):
    """Validate flights query parameters; raise ValueError with OpenSky-like text.

    ``enforce_limits`` is off for the ground-truth control endpoint, which
    tests use to compare whole collected periods at once.
    """
    airport = None
    if direction != "all":
        airport = args.get("airport")
        if not airport:
            raise ValueError("Missing parameter: airport")
        if not AIRPORT_PATTERN.fullmatch(airport):
            raise ValueError("Invalid airport: expected a 4-character ICAO code")
        airport = airport.upper()
    bounds = []
    for name in ("begin", "end"):
        value = args.get(name)
        if value is None:
            raise ValueError(f"Missing parameter: {name}")
        if not UNSIGNED_INT_PATTERN.fullmatch(value):
            raise ValueError(f"Invalid {name}: expected Unix seconds")
        bounds.append(int(value))
    begin, end = bounds
    if end <= begin:
        raise ValueError("The end of the time interval must be after its beginning")
    limit = MAX_ALL_INTERVAL if direction == "all" else MAX_AIRPORT_INTERVAL
    if enforce_limits and end - begin > limit:
        raise ValueError(f"The time interval must be smaller than {limit} seconds")
    return airport, begin, end


def parse_failure(failure):
    """Check one failure to inject and return it in a canonical form.

    A failure answers one request, or with ``for_seconds`` every matching
    request for that long from when it is injected (an outage); while it
    lasts, failures queued behind it for the same requests wait.
    """
    if not isinstance(failure, dict):
        raise ValueError("each failure must be a JSON object")
    result = _parse_failure_kind(failure)
    if "for_seconds" in failure:
        seconds = failure["for_seconds"]
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise ValueError("for_seconds must be a positive number")
        result["for_seconds"] = seconds
    return result


def _parse_failure_kind(failure):
    kind = failure.get("kind", "status")
    if kind == "status":
        status = failure.get("status")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("a status failure needs an HTTP error status (400-599)")
        result = {"kind": "status", "status": status}
        if status == 429:
            retry_after = failure.get("retry_after", 60)
            if not isinstance(retry_after, int) or retry_after < 0:
                raise ValueError("retry_after must be a non-negative integer")
            result["retry_after"] = retry_after
        return result
    if kind == "timeout":
        seconds = failure.get("seconds")
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("a timeout failure needs seconds >= 0")
        return {"kind": "timeout", "seconds": seconds}
    if kind == "malformed":
        variant = failure.get("variant", "truncated")
        if variant not in MALFORMED_FLIGHTS:
            raise ValueError(f"variant must be one of {', '.join(MALFORMED_FLIGHTS)}")
        return {"kind": "malformed", "variant": variant}
    raise ValueError("kind must be status, timeout or malformed")


class Simulator:
    """OpenSky as one client population sees it: tokens, credits, clock, failures."""

    def __init__(self, settings):
        self.initial_settings = settings
        self._lock = threading.Lock()
        self._reset()

    def _reset(self):
        self.settings = self.initial_settings
        self.world = SyntheticWorld(self.settings.seed, self.settings.density)
        self.dataset_loaded = False
        self.clock_offset = 0.0
        self.tokens = {}
        self.failures = []
        self.calls = []
        self.buckets = {
            ANONYMOUS: Bucket(self.settings.anonymous_credits),
            self.settings.client_id: Bucket(self.settings.user_credits),
        }

    def now(self):
        """Return the sim clock: real time shifted by the test-set offset."""
        return time.time() + self.clock_offset

    # Public OpenSky endpoints.

    def handle_token(self, form):
        """Issue a token for the client-credentials grant, as Keycloak does."""
        client_id = form.get("client_id")
        params = {"grant_type": form.get("grant_type"), "client_id": client_id}
        return self._serve("token", params, client_id, lambda: self._token(form))

    def handle_flights(self, direction, args, authorization):
        """Answer one flights request, charging credits as OpenSky does."""
        with self._lock:
            client = self._client_for(authorization)
        return self._serve(
            direction,
            args,
            client,
            lambda: self._flights(direction, args, authorization),
        )

    def _serve(self, endpoint, params, client, answer):
        """Answer, or fail the way the next matching injected failure says; log it."""
        started_at = time.time()
        with self._lock:
            failure = self._take_failure(endpoint)
        if failure is not None and failure["kind"] == "timeout":
            time.sleep(failure["seconds"])
        if failure is None or failure["kind"] == "timeout":
            result = answer()
        else:
            result = self._injected_answer(failure, endpoint, client)
        with self._lock:
            self.calls.append(
                {
                    "id": len(self.calls) + 1,
                    "endpoint": endpoint,
                    "path": TOKEN_PATH if endpoint == "token" else FLIGHTS_PATH + endpoint,
                    "params": params,
                    "client": result.client or client,
                    "status": result.status,
                    "cost": result.cost,
                    "injected": failure,
                    "started_at": started_at,
                    "finished_at": time.time(),
                }
            )
        return result

    def _token(self, form):
        grant_type = form.get("grant_type")
        client_id = form.get("client_id")
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
        if client_id != self.settings.client_id or not secrets.compare_digest(
            form.get("client_secret") or "", self.settings.client_secret
        ):
            return _invalid_client()
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = (client_id, self.now() + self.settings.token_lifetime)
        body = {
            "access_token": token,
            "expires_in": self.settings.token_lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "email profile",
        }
        return Answer(200, json.dumps(body), "application/json", client=client_id)

    def _flights(self, direction, args, authorization):
        with self._lock:
            client = self._client_for(authorization)
            if client is None:
                return Answer(401)
            try:
                airport, begin, end = parse_query(direction, args)
            except ValueError as error:
                return Answer(400, str(error), client=client)
            now = self.now()
            bucket = self._bucket(client)
            cost = request_cost(begin, end, now)
            if cost > bucket.remaining:
                headers = {
                    "X-Rate-Limit-Retry-After-Seconds": str(DAY - int(now) % DAY),
                    "X-Rate-Limit-Remaining": str(bucket.remaining),
                }
                return Answer(429, "Too many requests", headers=headers, client=client)
            flights = select_flights(
                self.world,
                direction=direction,
                airport=airport,
                begin=begin,
                end=end,
                now=now,
                all_semantics=self.settings.all_semantics,
            )
            bucket.used += cost
            headers = {"X-Rate-Limit-Remaining": str(bucket.remaining)}
        if not flights:
            return Answer(404, headers=headers, client=client, cost=cost)
        body = json.dumps(flights, separators=(",", ":"))
        return Answer(200, body, "application/json", headers, client, cost)

    def _client_for(self, authorization):
        """Return who is calling: a client id, ANONYMOUS, or None for a bad token."""
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            return None
        client_id, expires_at = self.tokens[token.strip()]
        return client_id if self.now() < expires_at else None

    def _bucket(self, client):
        """Return a client's bucket, emptied of usage when a new sim UTC day began."""
        bucket = self.buckets[client]
        today = int(self.now()) // DAY
        if bucket.day != today:
            bucket.day, bucket.used = today, 0
        return bucket

    def _take_failure(self, endpoint):
        now = time.time()
        # Outages that are over answer nothing more.
        self.failures = [
            (failure, target)
            for failure, target in self.failures
            if "until" not in failure or failure["until"] > now
        ]
        for index, (failure, target) in enumerate(self.failures):
            if target == endpoint or (target is None and endpoint in DIRECTIONS):
                if "until" not in failure:
                    del self.failures[index]
                return failure
        return None

    def _injected_answer(self, failure, endpoint, client):
        """Build the answer an injected status or malformed failure stands for."""
        if failure["kind"] == "malformed":
            bodies = MALFORMED_TOKEN if endpoint == "token" else MALFORMED_FLIGHTS
            return Answer(200, bodies[failure["variant"]], "application/json")
        status = failure["status"]
        if endpoint == "token" and status == 401:
            return _invalid_client()
        if status == 401:
            return Answer(401)
        headers = {}
        if status == 429:
            headers["X-Rate-Limit-Retry-After-Seconds"] = str(failure["retry_after"])
            if endpoint != "token" and client is not None:
                with self._lock:
                    headers["X-Rate-Limit-Remaining"] = str(self._bucket(client).remaining)
        return Answer(status, f"Injected failure: HTTP {status}", headers=headers)

    # Control interface.

    def reset(self):
        """Forget what tests changed: world, failures, calls, tokens, credits, clock, settings."""
        with self._lock:
            self._reset()

    def load_dataset(self, flights):
        """Make the world exactly these flights; raise ValueError if one is unusable."""
        if not isinstance(flights, list):
            raise ValueError("flights must be a JSON array")
        world = DatasetWorld(flights)
        with self._lock:
            self.world, self.dataset_loaded = world, True

    def clear_dataset(self):
        """Go back to the synthetic world."""
        with self._lock:
            self.world = SyntheticWorld(self.settings.seed, self.settings.density)
            self.dataset_loaded = False

    def ground_truth(self, direction, args):
        """Return what OpenSky holds, without auth, credits, 404 or interval limits."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        airport, begin, end = parse_query(direction, args, enforce_limits=False)
        with self._lock:
            return select_flights(
                self.world,
                direction=direction,
                airport=airport,
                begin=begin,
                end=end,
                now=self.now(),
                all_semantics=self.settings.all_semantics,
            )

    def inject(self, failures, endpoint):
        """Queue failures for the next requests to ``endpoint`` (None: any flights one)."""
        if endpoint is not None and endpoint not in (*DIRECTIONS, "token"):
            raise ValueError("endpoint must be arrival, departure, all, token or null")
        if not isinstance(failures, list):
            raise ValueError("failures must be a JSON array")
        parsed = [parse_failure(failure) for failure in failures]
        injected_at = time.time()
        for failure in parsed:
            if "for_seconds" in failure:
                failure["until"] = injected_at + failure["for_seconds"]
        with self._lock:
            self.failures.extend((failure, endpoint) for failure in parsed)
            return len(self.failures)

    def pending_failures(self):
        """List the failures not yet consumed (outages not yet over), in firing order."""
        now = time.time()
        with self._lock:
            return [
                {"endpoint": target, "failure": failure}
                for failure, target in self.failures
                if "until" not in failure or failure["until"] > now
            ]

    def clear_failures(self):
        """Drop every pending failure."""
        with self._lock:
            self.failures.clear()

    def call_log(self):
        """Return a copy of the call log, oldest first."""
        with self._lock:
            return list(self.calls)

    def clear_calls(self):
        """Empty the call log."""
        with self._lock:
            self.calls.clear()

    def expire_tokens(self):
        """Make every token issued so far unusable, as if its lifetime ran out."""
        with self._lock:
            for token, (client_id, _) in self.tokens.items():
                self.tokens[token] = (client_id, float("-inf"))

    def credits(self):
        """Return every bucket's limit, usage and balance for today."""
        with self._lock:
            return {
                client: {"limit": b.limit, "used": b.used, "remaining": b.remaining}
                for client, b in ((c, self._bucket(c)) for c in self.buckets)
            }

    def set_credits(self, client, *, limit=None, remaining=None):
        """Change a client's daily limit and/or today's balance."""
        with self._lock:
            if client not in self.buckets:
                raise KeyError(client)
            bucket = self._bucket(client)
            if limit is not None:
                bucket.limit = limit
            if remaining is not None:
                bucket.used = bucket.limit - remaining

    def set_all_semantics(self, semantics):
        """Switch what ``/flights/all`` returns from now on (``first-seen`` or ``contained``)."""
        if semantics not in ALL_SEMANTICS:
            raise ValueError(f"all_semantics must be one of {', '.join(ALL_SEMANTICS)}")
        with self._lock:
            self.settings = replace(self.settings, all_semantics=semantics)

    def set_clock_offset(self, seconds):
        """Shift the sim clock relative to real time."""
        with self._lock:
            self.clock_offset = float(seconds)

    def state(self):
        """Summarise the simulator for someone debugging a test."""
        with self._lock:
            return {
                "settings": asdict(self.settings),
                "dataset_loaded": self.dataset_loaded,
                "pending_failures": len(self.failures),
                "call_count": len(self.calls),
                "clock_offset_seconds": self.clock_offset,
                "now": self.now(),
                "tokens_issued": len(self.tokens),
            }


def _oauth_error(status, error, description):
    body = json.dumps({"error": error, "error_description": description})
    return Answer(status, body, "application/json")


def _invalid_client():
    return _oauth_error(401, "invalid_client", "Invalid client or Invalid client credentials")
