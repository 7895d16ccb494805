"""Data Collector settings, read from the environment with local-stack defaults."""

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from common.settings import (
    HOUR_SECONDS,
    MAX_RETENTION_DAYS,
    AnyCase,
    BrokerSettings,
    ServiceSettings,
    named_after,
    url_with,
)

# OpenSky's daily credits for flights requests, as it documents them.
ANONYMOUS_DAILY_CREDITS = 400
ACCOUNT_DAILY_CREDITS = 4000
# Today's newest part is fetched only when at least this much is new: a request costs
# the same for one minute as for a day, so tiny tails waste credits. Never more than
# COLLECT_INTERVAL_MINUTES, or a short interval would be silently stretched to this.
MIN_GAP_MINUTES = 60

# .env as shipped holds these placeholders; they mean "no credentials" (anonymous access).
CREDENTIAL_PLACEHOLDERS = {"your_api_client_id", "your_api_client_secret"}
OpenSkyCredential = Annotated[
    str, AfterValidator(lambda value: "" if value in CREDENTIAL_PLACEHOLDERS else value)
]


def daily_credits_of_the_account(given: dict[str, Any]) -> int:
    """Return the default ``OPENSKY_DAILY_CREDITS``: OpenSky's quota of the account in use."""
    return ACCOUNT_DAILY_CREDITS if given["OPENSKY_CLIENT_ID"] else ANONYMOUS_DAILY_CREDITS


def min_gap_within_the_interval(given: dict[str, Any]) -> int:
    """Return the default ``COLLECT_MIN_GAP_MINUTES``: the shorter of an hour and the interval."""
    return min(MIN_GAP_MINUTES, given["COLLECT_INTERVAL_MINUTES"])


class Settings(ServiceSettings, BrokerSettings):
    """Everything the Data Collector reads from its environment, read when instantiated.

    The broker's settings (``NATS_URL``, ``CONSUMER_*``) are the ones every service that
    publishes or consumes reads: the collector publishes ``to-alert-system`` and consumes
    ``to-data-collector``.
    """

    model_config = named_after("DATA_COLLECTOR", http_port=5002, grpc_port=50052)

    USER_MANAGER_GRPC_ADDR: str = "localhost:50051"
    # Interest bodies are tiny; 16 KiB leaves room and stops abuse early (413).
    MAX_CONTENT_LENGTH: ClassVar[int] = 16 * 1024
    # Every followed airport costs OpenSky credits every day: a user's list stays a
    # list of favourites, and the collector's set stays what one account can afford.
    MAX_INTERESTS_PER_USER: int = Field(20, ge=1)
    MAX_FOLLOWED_AIRPORTS: int = Field(200, ge=1)
    # POST /collection/runs: at most one cycle asked for this often (a cycle collects
    # everything due, so more would only spend credits).
    COLLECTION_RUN_MIN_INTERVAL_SECONDS: int = Field(60, ge=0)
    OPENSKY_API_URL: Annotated[
        str,
        url_with("http", "https", example="https://opensky-network.org/api"),
        AfterValidator(lambda url: url.rstrip("/")),
    ] = "https://opensky-network.org/api"
    OPENSKY_TOKEN_URL: Annotated[
        str, url_with("http", "https", example="https://auth.example.com/token")
    ] = "https://auth.opensky-network.org/auth/realms/opensky-network/protocol/openid-connect/token"
    OPENSKY_CLIENT_ID: OpenSkyCredential = ""
    OPENSKY_CLIENT_SECRET: OpenSkyCredential = Field("", repr=False)
    # The credits collection may spend per UTC day: OpenSky's daily quota of the
    # account, 400 anonymous or 4,000 with credentials. Once it is spent, what is
    # still due waits for the next day; the most-followed airports are collected first.
    OPENSKY_DAILY_CREDITS: int = Field(default_factory=daily_credits_of_the_account, ge=1)

    # --- Collection (the worker role) --------------------------------------------
    # Twice a day: arrivals are completed by OpenSky's nightly batch, so a 12-hour
    # period picks the batch up within half a day while the cheap "recent" requests
    # (4 credits each) keep today's flights fresh.
    COLLECT_INTERVAL_MINUTES: int = Field(720, ge=1)
    # A week back for a newly followed airport: the default window of /flights/average.
    COLLECT_BACKFILL_DAYS: int = Field(7, ge=0)
    # A day is fetched again once it is this many days old, then never again: by
    # then the nightly batch has filled its arrivals and every flight has landed.
    COLLECT_REFRESH_DAYS: int = Field(1, ge=0, le=MAX_RETENTION_DAYS)
    # A gap longer than the interval would make cycles re-fetch today less often than
    # the operator asked for, so an explicit one is refused (see MIN_GAP_MINUTES).
    COLLECT_MIN_GAP_MINUTES: int = Field(default_factory=min_gap_within_the_interval, ge=0)
    # How often the worker looks for cycles asked for by POST /interests (a tiny
    # indexed query); a new airport's flights start arriving within this delay.
    COLLECT_POLL_SECONDS: float = Field(2.0, ge=0.1)
    # A range that still fails after OPENSKY_MAX_ATTEMPTS is asked for again after a
    # minute (long enough for a burst of 5xx to pass), then twice as long after each
    # failure up to half an hour: a long outage costs a request per range and half hour,
    # and a range waits at most that long once OpenSky is back. Independent of the
    # interval, so a failure never waits for the next periodic cycle.
    COLLECT_RETRY_FIRST_SECONDS: float = Field(60.0, ge=0.1)
    COLLECT_RETRY_MAX_SECONDS: float = Field(1800.0, ge=0.1)
    # auto: use the global /flights/all sweep when the cost model says it is cheaper;
    # never: always ask per airport. An OpenSky forum report says /flights/all only
    # returns flights wholly inside its 2-hour window, which would make a sweep miss
    # every longer flight: the collector checks every swept day for it and, if so,
    # marks nothing of it and collects per airport from then on (see collection/cycle.py).
    COLLECT_SWEEP: Annotated[Literal["auto", "never"], AnyCase] = "auto"
    # How often interests of users deleted behind the collector's back (a user deleted
    # while POST /interests was between its check and its insert) are looked for: one
    # cheap CheckUserExists per user with interests; hourly bounds the credits an
    # orphan can cost to one collection cycle.
    INTEREST_RECONCILE_MINUTES: int = Field(60, ge=1)
    # Flights (and collection marks) older than this are deleted after each cycle.
    RETENTION_DAYS: int = Field(30, ge=1, le=MAX_RETENTION_DAYS)
    # OpenSky's flights queries can take several seconds on busy airports; 30 s
    # separates slow from stuck.
    OPENSKY_TIMEOUT_SECONDS: float = Field(30.0, ge=0.1, le=HOUR_SECONDS)
    # Attempts per request on timeouts, 5xx and malformed bodies (then the range fails),
    # with exponential backoff from OPENSKY_RETRY_BACKOFF_SECONDS: 2, 4, 8 s by default.
    OPENSKY_MAX_ATTEMPTS: int = Field(4, ge=1)
    OPENSKY_RETRY_BACKOFF_SECONDS: float = Field(2.0, ge=0.0)
    # Tokens live 30 minutes; renewing one a minute early avoids a 401 mid-cycle.
    OPENSKY_TOKEN_MARGIN_SECONDS: int = Field(60, ge=0)
    # The circuit breaker around every OpenSky call opens after this many failed calls in a
    # row (timeouts, connection errors, 5xx): three ranges failing every attempt at the
    # default OPENSKY_MAX_ATTEMPTS. One range failing whole, even twice (its first retry),
    # is a bad range; three in a row is OpenSky down, and asking on only wastes minutes.
    OPENSKY_BREAKER_FAILURES: int = Field(12, ge=1)
    # Then no call for this long, and one trial call: a minute, as the first retry of a
    # failed range (COLLECT_RETRY_FIRST_SECONDS), so an outage of a few minutes costs a
    # request a minute and collection resumes within a minute of OpenSky's return.
    OPENSKY_BREAKER_COOLDOWN_SECONDS: float = Field(60.0, ge=0.1)

    @model_validator(mode="after")
    def _check_collection(self) -> Self:
        gap, interval = self.COLLECT_MIN_GAP_MINUTES, self.COLLECT_INTERVAL_MINUTES
        if gap > interval:
            raise ValueError(
                f"COLLECT_MIN_GAP_MINUTES ({gap}) must not exceed COLLECT_INTERVAL_MINUTES "
                f"({interval}): today's flights would be fetched only every {gap} minutes, "
                f"not every {interval}. Lower COLLECT_MIN_GAP_MINUTES or leave it unset."
            )
        first, most = self.COLLECT_RETRY_FIRST_SECONDS, self.COLLECT_RETRY_MAX_SECONDS
        if most < first:
            raise ValueError(
                f"COLLECT_RETRY_MAX_SECONDS ({most:g}) must be at least "
                f"COLLECT_RETRY_FIRST_SECONDS ({first:g})."
            )
        if self.RETENTION_DAYS <= self.COLLECT_BACKFILL_DAYS:
            raise ValueError(
                "RETENTION_DAYS must exceed COLLECT_BACKFILL_DAYS, or the collector would "
                "fetch again the days it has just deleted."
            )
        return self

    def startup_warnings(self) -> list[str]:
        """Return what the operator must know at start, OpenSky access without credentials too."""
        warnings = super().startup_warnings()
        if self.OPENSKY_CLIENT_ID and self.OPENSKY_CLIENT_SECRET:
            return warnings
        return [
            *warnings,
            "OpenSky credentials are not set (missing, or still the .env placeholders "
            "your_api_client_id / your_api_client_secret): the collector calls OpenSky "
            "anonymously, with the anonymous daily credit limit. Put your API client's id "
            "and secret in OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET (.env) to use yours.",
        ]
