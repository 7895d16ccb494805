"""OpenSky REST client for the collector: OAuth2 tokens, timeouts, retries, strict parsing.

Every request has a timeout. Timeouts, connection errors, 5xx answers and
bodies that are not a list of well-formed flights (a truncated answer is
usually transient) are retried a bounded number of times with exponential
backoff; a 429 is never retried here: it raises :class:`RateLimitedError` so
the cycle stops and waits as long as OpenSky says. A body is checked whole
before anything is stored: "well-formed" includes every value fitting its column (32-bit integers,
printable ASCII text of the column's length, a 6-hex-digit icao24, times a
``datetime`` can hold with ``lastSeen`` not before ``firstSeen``), so a
flight that passes the check can always be stored.
Tokens (client-credentials grant) are cached until shortly before they
expire and renewed once when OpenSky answers 401; without credentials the
client is anonymous.

Every call (each attempt, flights or token) goes through a circuit breaker
(pybreaker): after ``breaker_failures`` calls in a row failed (timeouts,
connection errors, 5xx; a 404, a 429 or any other answer is OpenSky
answering) it opens, and for ``breaker_cooldown`` seconds no call is made:
:class:`CircuitOpenError` at once, without the backoff. Then one trial call
goes through; its success closes the breaker, its failure opens it again.
The breaker's state is not the process's: the cycle resumes it from the
database (:meth:`OpenSkyClient.resume_breaker`) and saves it back
(:meth:`OpenSkyClient.breaker_snapshot`), so every replica and ``/health``
see the same.
"""

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
import requests

from common.process.heartbeat import progress
from data_collector.metrics import (
    OPENSKY_BREAKER_OPENINGS,
    OPENSKY_CREDITS,
    OPENSKY_LAST_REQUEST_SECONDS,
    OPENSKY_REQUESTS,
    request_outcome,
)

log = logging.getLogger(__name__)

# When a 429 carries no X-Rate-Limit-Retry-After-Seconds, wait this long (a guess
# that neither hammers OpenSky nor stalls collection for a day).
DEFAULT_RETRY_AFTER_SECONDS = 300
# What a bearer token may hold (RFC 6750's b64token): it goes into a header as it is.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# OpenSky's tokens last 30 minutes; one said to last longer is used for a day at most.
MAX_TOKEN_SECONDS = 86_400
MAX_TEXT_FIELD = 8  # ICAO codes and callsigns fit in 8 characters (their columns' length)
# Distances and candidate counts are stored in PostgreSQL ``integer`` columns.
INT32 = range(-(2**31), 2**31)
# firstSeen/lastSeen: from the epoch to the end of year 9999 (datetime's limit).
UNIX_SECONDS = range(0, 253_402_300_800)
ICAO24 = re.compile(r"[0-9a-f]{6}")


class OpenSkyError(Exception):
    """OpenSky could not give an answer for this request (the range stays uncollected)."""


class RateLimitedError(OpenSkyError):
    """OpenSky answered 429: no request before ``retry_after`` seconds have passed."""

    def __init__(self, retry_after: int, remaining: int | None):
        super().__init__(f"rate limited; retry after {retry_after}s")
        self.retry_after = retry_after
        self.remaining = remaining


class MalformedResponseError(OpenSkyError):
    """The body is not what OpenSky documents; nothing of it may be stored."""


class UnavailableError(OpenSkyError):
    """Timeouts, 5xx or malformed bodies on every attempt, or the request rejected."""


class CredentialsRefusedError(UnavailableError):
    """The token endpoint refused our client id and secret: no request can succeed."""


class CircuitOpenError(OpenSkyError):
    """Too many calls in a row failed: no call to OpenSky before ``until``."""

    def __init__(self, message: str, until: datetime):
        super().__init__(message)
        self.until = until


BREAKER_STATES = (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN)


@dataclass(frozen=True)
class BreakerSnapshot:
    """The circuit breaker's state, as the database keeps it for every process."""

    state: str = pybreaker.STATE_CLOSED  # closed, open or half-open
    failures: int = 0  # calls failed in a row
    opened_at: datetime | None = None

    def open_until(self, cooldown: float) -> datetime | None:
        """Return until when no call may be made (None: calls may be made now or after a trial)."""
        if self.state != pybreaker.STATE_OPEN or self.opened_at is None:
            return None
        return self.opened_at + timedelta(seconds=cooldown)


class _BreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's state for one cycle, started from a snapshot and read back as one."""

    def __init__(self, snapshot: BreakerSnapshot):
        super().__init__("collector_state")
        self._state = snapshot.state
        self._failures = snapshot.failures
        self._successes = 0
        self._opened_at = snapshot.opened_at

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state

    def increment_counter(self) -> None:
        self._failures += 1

    def reset_counter(self) -> None:
        self._failures = 0

    def increment_success_counter(self) -> None:
        self._successes += 1

    def reset_success_counter(self) -> None:
        self._successes = 0

    @property
    def counter(self) -> int:
        return self._failures

    @property
    def success_counter(self) -> int:
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._opened_at = value

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(self._state, self._failures, self._opened_at)


@dataclass(frozen=True)
class FlightsAnswer:
    """The flights of one request (rows for ``flight_data``) and the credits left."""

    flights: list[dict[str, Any]]
    remaining: int | None


class OpenSkyClient:
    """A client for one process; holds the cached token."""

    def __init__(
        self,
        *,
        api_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        max_attempts: int,
        backoff_seconds: float,
        token_margin_seconds: int = 60,
        breaker_failures: int = 12,
        breaker_cooldown: float = 60.0,
        session: requests.Session | None = None,
    ):
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.token_margin_seconds = token_margin_seconds
        self.session = session or requests.Session()
        self._token: str | None = None
        self._token_expires_at = 0.0  # time.monotonic()
        self.last_remaining: int | None = None
        self.breaker_failures = breaker_failures
        self.breaker_cooldown = breaker_cooldown
        self.resume_breaker(BreakerSnapshot())

    def resume_breaker(self, snapshot: BreakerSnapshot) -> None:
        """Continue from the circuit breaker's shared state (a cycle starts with it)."""
        self._breaker_storage = _BreakerStorage(snapshot)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=self.breaker_failures,
            reset_timeout=self.breaker_cooldown,
            state_storage=self._breaker_storage,
            name="opensky",
            # The failure that opens it is raised as it is (it says what failed).
            throw_new_error_on_trip=False,
        )

    def breaker_snapshot(self) -> BreakerSnapshot:
        """Return the circuit breaker's state now, for the database."""
        return self._breaker_storage.snapshot()

    @property
    def anonymous(self) -> bool:
        """True when no credentials are configured."""
        return not (self.client_id and self.client_secret)

    def flights(self, endpoint: str, *, begin: int, end: int, airport: str | None) -> FlightsAnswer:
        """Fetch ``/flights/<endpoint>`` over ``[begin, end]``; raise OpenSkyError if it fails."""
        params: dict[str, Any] = {"begin": begin, "end": end}
        if airport is not None:
            params["airport"] = airport
        url = f"{self.api_url}/flights/{endpoint}"
        parsed: list[list[dict[str, Any]]] = []

        def send() -> requests.Response:
            response = self._get(url, params)
            if response.status_code == 200:
                try:
                    parsed.append(parse_flights(response))
                except MalformedResponseError as error:
                    # Usually a body cut off or garbled under load: asked again like a 5xx.
                    raise _RetryableError(f"malformed body: {error}") from None
            return response

        renewed = False
        while True:
            response = self._with_retries(send, what=f"{endpoint} {params}", endpoint=endpoint)
            remaining = _int_header(response, "X-Rate-Limit-Remaining")
            if remaining is not None:
                self.last_remaining = remaining
                OPENSKY_CREDITS.set(remaining)
            if response.status_code == 401 and not self.anonymous and not renewed:
                log.info("OpenSky answered 401: renewing the token once")
                self._token = None
                renewed = True
                continue
            break
        status = response.status_code
        if status == 429:
            retry_after = _int_header(response, "X-Rate-Limit-Retry-After-Seconds")
            raise RateLimitedError(
                DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after, remaining
            )
        if status == 404:
            return FlightsAnswer([], remaining)  # OpenSky's "no flights in this interval"
        if status != 200:
            raise UnavailableError(f"OpenSky answered {status} to {endpoint} {params}")
        return FlightsAnswer(parsed[-1], remaining)

    def _get(self, url: str, params: dict[str, Any]) -> requests.Response:
        headers = {}
        # Before the call, not inside it: the token's own calls go through the breaker alone.
        token = self._current_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self._through_breaker(
            lambda: self.session.get(url, params=params, headers=headers, timeout=self.timeout)
        )

    def _current_token(self) -> str | None:
        if self.anonymous:
            return None
        if self._token is None or time.monotonic() >= self._token_expires_at:
            self._token, lifetime = self._request_token()
            usable = max(lifetime - self.token_margin_seconds, lifetime / 2)
            self._token_expires_at = time.monotonic() + usable
        return self._token

    def _request_token(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

        parsed: list[tuple[str, float]] = []

        def post() -> requests.Response:
            response = self._through_breaker(
                lambda: self.session.post(self.token_url, data=form, timeout=self.timeout)
            )
            if response.status_code == 200:
                try:
                    body = response.json()
                    token, lifetime = body["access_token"], float(body["expires_in"])
                    if not (isinstance(token, str) and BEARER_TOKEN.fullmatch(token)):
                        raise ValueError("no usable token")
                    if not 0 < lifetime < math.inf:  # NaN too
                        raise ValueError(f"a lifetime of {lifetime} s")
                    lifetime = min(lifetime, MAX_TOKEN_SECONDS)
                except (ValueError, KeyError, TypeError) as error:
                    # Treated like a 5xx: a broken answer from a sick server.
                    raise _RetryableError(f"malformed token answer: {error}") from None
                parsed.append((token, lifetime))
            return response

        response = self._with_retries(post, what="token", endpoint="token")
        if response.status_code != 200:
            raise CredentialsRefusedError(
                f"OpenSky refused the credentials (HTTP {response.status_code}); "
                "check OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET"
            )
        return parsed[-1]

    def _through_breaker(self, send) -> requests.Response:
        """Make one HTTP call through the circuit breaker; raise CircuitOpenError if it is open.

        A 5xx answer counts as a failure, as timeouts and connection errors do;
        any other answer (a malformed body too) is OpenSky answering.
        """

        def call() -> requests.Response:
            response = send()
            if response.status_code >= 500:
                raise _ServerError(response)
            return response

        state_before = self._breaker.current_state
        opened_before = self._breaker_storage.opened_at
        try:
            return self._breaker.call(call)
        except _ServerError as error:
            return error.response
        except pybreaker.CircuitBreakerError:
            raise self._open_error() from None
        finally:
            state = self._breaker.current_state
            if state == pybreaker.STATE_OPEN and self._breaker_storage.opened_at != opened_before:
                OPENSKY_BREAKER_OPENINGS.inc()
                log.warning(
                    "OpenSky circuit breaker opened (%s): no call before %s, then one trial",
                    "its trial call failed"
                    if state_before != pybreaker.STATE_CLOSED
                    else f"{self._breaker.fail_counter} calls failed in a row",
                    self._open_until(),
                )
            elif state == pybreaker.STATE_CLOSED and state_before != pybreaker.STATE_CLOSED:
                log.info("OpenSky circuit breaker closed: the trial call was answered")

    def _open_until(self) -> datetime:
        opened_at = self._breaker_storage.opened_at or datetime.now(UTC)
        return opened_at + timedelta(seconds=self.breaker_cooldown)

    def _open_error(self, problem: str | None = None) -> CircuitOpenError:
        until = self._open_until()
        last = f" (the last: {problem})" if problem else ""
        return CircuitOpenError(
            f"circuit breaker open after {self.breaker_failures} failed calls in a row{last}: "
            f"no call to OpenSky before {until.isoformat()}",
            until,
        )

    def _with_retries(self, send, *, what: str, endpoint: str) -> requests.Response:
        """Call ``send`` until it answers without a timeout, 5xx or bad body (``max_attempts``).

        Every attempt is counted in ``opensky_requests_total`` under ``endpoint``.
        Once the circuit breaker opens, no further attempt is made.
        """
        for attempt in range(1, self.max_attempts + 1):
            started = time.monotonic()
            try:
                response = send()
                OPENSKY_REQUESTS.labels(
                    endpoint, request_outcome(endpoint, response.status_code)
                ).inc()
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
            except requests.Timeout:
                OPENSKY_REQUESTS.labels(endpoint, "timeout").inc()
                problem = f"no answer within {self.timeout}s"
            except _RetryableError as error:
                OPENSKY_REQUESTS.labels(endpoint, "malformed").inc()
                problem = str(error)
            except requests.RequestException as error:
                # Connection errors, but also a body cut off or garbled on the way
                # (ChunkedEncodingError, ContentDecodingError): worth another attempt.
                OPENSKY_REQUESTS.labels(endpoint, "connection_error").inc()
                problem = f"{type(error).__name__}: {error}"
            finally:
                OPENSKY_LAST_REQUEST_SECONDS.labels(endpoint).set(time.monotonic() - started)
                progress()  # an answer (or a timeout) is progress for the worker's heartbeat
            if self._breaker.current_state == pybreaker.STATE_OPEN:
                raise self._open_error(problem)
            if attempt == self.max_attempts:
                raise UnavailableError(f"OpenSky {what}: {problem} ({attempt} attempts)")
            delay = self.backoff_seconds * 2 ** (attempt - 1)
            log.warning("OpenSky %s: %s; retrying in %.2fs", what, problem, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")


class _RetryableError(Exception):
    """A failure worth another attempt that is not an HTTP status."""


class _ServerError(Exception):
    """A 5xx answer, raised inside the circuit breaker so that it counts as a failure."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def parse_flights(response: requests.Response) -> list[dict[str, Any]]:
    """Turn an OpenSky flights body into ``flight_data`` rows, all or none."""
    try:
        body = response.json()
    except (ValueError, RecursionError) as error:  # RecursionError: nested past the parser
        raise MalformedResponseError(f"body is not JSON: {error!r}") from None
    if not isinstance(body, list):
        raise MalformedResponseError(f"body is a {type(body).__name__}, not a list of flights")
    return [parse_flight(item, index) for index, item in enumerate(body)]


def parse_flight(item: Any, index: int = 0) -> dict[str, Any]:
    """Check one OpenSky flight object and return it as a ``flight_data`` row.

    Types and value ranges are both checked: a value the database or
    ``datetime`` would refuse must be refused here, as a malformed body,
    rather than fail the cycle when the row is inserted. The checks are
    module-level functions, not closures built anew for every flight: this
    runs for every flight of every answer.
    """
    if not isinstance(item, dict):
        raise MalformedResponseError(f"flight {index} is not an object")
    icao24 = item.get("icao24")
    icao24 = icao24.strip().lower() if isinstance(icao24, str) else icao24
    if not isinstance(icao24, str) or not ICAO24.fullmatch(icao24):
        raise _bad(item, index, "icao24", "is not a 24-bit address in 6 hex digits")
    first_seen = _integer(item, index, "firstSeen", UNIX_SECONDS, required=True)
    last_seen = _integer(item, index, "lastSeen", UNIX_SECONDS, required=True)
    if last_seen < first_seen:
        raise _bad(item, index, "lastSeen", f"is before firstSeen {first_seen}")
    return {
        "icao24": icao24,
        "first_seen": datetime.fromtimestamp(first_seen, UTC),
        "est_departure_airport": _text(item, index, "estDepartureAirport"),
        "last_seen": datetime.fromtimestamp(last_seen, UTC),
        "est_arrival_airport": _text(item, index, "estArrivalAirport"),
        "callsign": _text(item, index, "callsign"),
        "est_departure_airport_horiz_distance": _integer(
            item, index, "estDepartureAirportHorizDistance"
        ),
        "est_departure_airport_vert_distance": _integer(
            item, index, "estDepartureAirportVertDistance"
        ),
        "est_arrival_airport_horiz_distance": _integer(
            item, index, "estArrivalAirportHorizDistance"
        ),
        "est_arrival_airport_vert_distance": _integer(item, index, "estArrivalAirportVertDistance"),
        "departure_airport_candidates_count": _integer(
            item, index, "departureAirportCandidatesCount"
        ),
        "arrival_airport_candidates_count": _integer(item, index, "arrivalAirportCandidatesCount"),
    }


def _bad(item: dict, index: int, name: str, why: str) -> MalformedResponseError:
    return MalformedResponseError(f"flight {index}: {name} {why} ({item.get(name)!r:.40})")


def _integer(
    item: dict, index: int, name: str, allowed: range = INT32, *, required: bool = False
) -> int | None:
    """Return a whole number within ``allowed``, or None when missing or null (if allowed)."""
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
        raise _bad(item, index, name, "is not a whole number in range")
    return value


def _text(item: dict, index: int, name: str) -> str | None:
    """Return printable ASCII text that fits its column, stripped; None for null or blank."""
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not (value.isascii() and value.isprintable()):
        raise _bad(item, index, name, "is not printable ASCII text")
    value = value.strip()
    if len(value) > MAX_TEXT_FIELD:
        raise _bad(item, index, name, f"is longer than {MAX_TEXT_FIELD} characters")
    return value or None
