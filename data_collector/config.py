"""Data Collector settings, read from the environment with local-stack defaults."""

from common.settings import BaseConfig, ConfigError, env_float, env_int, env_is_set, env_str

OPENSKY_API_URL = "https://opensky-network.org/api"
OPENSKY_TOKEN_URL = (
    "https://auth.opensky-network.org/auth/realms/opensky-network/protocol/openid-connect/token"
)

SWEEP_MODES = ("auto", "never")
# OpenSky's daily credits for flights requests, as it documents them.
ANONYMOUS_DAILY_CREDITS = 400
ACCOUNT_DAILY_CREDITS = 4000
# Today's newest part is fetched only when at least this much is new: a request costs
# the same for one minute as for a day, so tiny tails waste credits. Never more than
# COLLECT_INTERVAL_MINUTES, or a short interval would be silently stretched to this.
MIN_GAP_MINUTES = 60

# The seed's .env ships these placeholders; they mean "no credentials" (anonymous access).
CREDENTIAL_PLACEHOLDERS = {"your_api_client_id", "your_api_client_secret"}


def opensky_credential(name: str) -> str:
    """Return an OpenSky credential from the environment, or "" when unset or a placeholder."""
    value = env_str(name, "") or ""
    return "" if value in CREDENTIAL_PLACEHOLDERS else value


class Config(BaseConfig):
    """Everything the Data Collector reads from its environment, read when instantiated."""

    DATABASE_URL_VARIABLE = "DATA_COLLECTOR_DATABASE_URL"
    MIGRATION_DATABASE_URL_VARIABLE = "DATA_COLLECTOR_MIGRATION_DATABASE_URL"
    PUBLIC_URL_VARIABLE = "DATA_COLLECTOR_PUBLIC_URL"

    def __init__(self) -> None:
        super().__init__()
        self.HTTP_PORT = env_int("DATA_COLLECTOR_HTTP_PORT", 5002, minimum=1)
        self.GRPC_PORT = env_int("DATA_COLLECTOR_GRPC_PORT", 50052, minimum=1)
        self.USER_MANAGER_GRPC_ADDR = env_str("USER_MANAGER_GRPC_ADDR", "localhost:50051")
        # Interest bodies are tiny; 16 KiB leaves room and stops abuse early (413).
        self.MAX_CONTENT_LENGTH = 16 * 1024
        # Every followed airport costs OpenSky credits every day: a user's list stays a
        # list of favourites, and the collector's set stays what one account can afford.
        self.MAX_INTERESTS_PER_USER = env_int("MAX_INTERESTS_PER_USER", 20, minimum=1)
        self.MAX_FOLLOWED_AIRPORTS = env_int("MAX_FOLLOWED_AIRPORTS", 200, minimum=1)
        # POST /collection/runs: at most one cycle asked for this often (a cycle collects
        # everything due, so more would only spend credits).
        self.COLLECTION_RUN_MIN_INTERVAL_SECONDS = env_int(
            "COLLECTION_RUN_MIN_INTERVAL_SECONDS", 60, minimum=0
        )
        self.OPENSKY_API_URL = env_str("OPENSKY_API_URL", OPENSKY_API_URL).rstrip("/")
        self.OPENSKY_TOKEN_URL = env_str("OPENSKY_TOKEN_URL", OPENSKY_TOKEN_URL)
        self.OPENSKY_CLIENT_ID = opensky_credential("OPENSKY_CLIENT_ID")
        self.OPENSKY_CLIENT_SECRET = opensky_credential("OPENSKY_CLIENT_SECRET")
        # The credits collection may spend per UTC day: OpenSky's daily quota of the
        # account, 400 anonymous or 4,000 with credentials. Once it is spent, what is
        # still due waits for the next day; the most-followed airports are collected first.
        self.OPENSKY_DAILY_CREDITS = env_int(
            "OPENSKY_DAILY_CREDITS",
            ACCOUNT_DAILY_CREDITS if self.OPENSKY_CLIENT_ID else ANONYMOUS_DAILY_CREDITS,
            minimum=1,
        )

        # --- Collection (the worker role) --------------------------------------------
        # Twice a day: arrivals are completed by OpenSky's nightly batch, so a 12-hour
        # period picks the batch up within half a day while the cheap "recent" requests
        # (4 credits each) keep today's flights fresh; the assignment suggests 12 or 24 h.
        self.COLLECT_INTERVAL_MINUTES = env_int("COLLECT_INTERVAL_MINUTES", 720, minimum=1)
        # A week back for a newly followed airport: the default window of /flights/average.
        self.COLLECT_BACKFILL_DAYS = env_int("COLLECT_BACKFILL_DAYS", 7, minimum=0)
        # A day is fetched again once it is this many days old, then never again: by
        # then the nightly batch has filled its arrivals and every flight has landed.
        self.COLLECT_REFRESH_DAYS = env_int("COLLECT_REFRESH_DAYS", 1, minimum=0)
        self.COLLECT_MIN_GAP_MINUTES = self._min_gap_minutes()
        # How often the worker looks for cycles asked for by POST /interests (a tiny
        # indexed query); a new airport's flights start arriving within this delay.
        self.COLLECT_POLL_SECONDS = env_float("COLLECT_POLL_SECONDS", 2.0, minimum=0.1)
        # A range that still fails after OPENSKY_MAX_ATTEMPTS is asked for again after a
        # minute (long enough for a burst of 5xx to pass), then twice as long after each
        # failure up to half an hour: a long outage costs a request per range and half hour,
        # and a range waits at most that long once OpenSky is back. Independent of the
        # interval, so a failure never waits for the next periodic cycle.
        self.COLLECT_RETRY_FIRST_SECONDS = env_float(
            "COLLECT_RETRY_FIRST_SECONDS", 60.0, minimum=0.1
        )
        self.COLLECT_RETRY_MAX_SECONDS = env_float("COLLECT_RETRY_MAX_SECONDS", 1800.0, minimum=0.1)
        if self.COLLECT_RETRY_MAX_SECONDS < self.COLLECT_RETRY_FIRST_SECONDS:
            raise ConfigError(
                f"COLLECT_RETRY_MAX_SECONDS ({self.COLLECT_RETRY_MAX_SECONDS:g}) must be at least "
                f"COLLECT_RETRY_FIRST_SECONDS ({self.COLLECT_RETRY_FIRST_SECONDS:g})."
            )
        # auto: use the global /flights/all sweep when the cost model says it is cheaper;
        # never: always ask per airport. An OpenSky forum report says /flights/all only
        # returns flights wholly inside its 2-hour window, which would make a sweep miss
        # every longer flight: the collector checks every swept day for it and, if so,
        # marks nothing of it and collects per airport from then on (see collection.py).
        self.COLLECT_SWEEP = (env_str("COLLECT_SWEEP", "auto") or "auto").lower()
        if self.COLLECT_SWEEP not in SWEEP_MODES:
            raise ConfigError(f"COLLECT_SWEEP must be auto or never, got {self.COLLECT_SWEEP!r}.")
        # How often interests of users deleted behind the collector's back (a user deleted
        # while POST /interests was between its check and its insert) are looked for: one
        # cheap CheckUserExists per user with interests; hourly bounds the credits an
        # orphan can cost to one collection cycle.
        self.INTEREST_RECONCILE_MINUTES = env_int("INTEREST_RECONCILE_MINUTES", 60, minimum=1)
        # Flights (and collection marks) older than this are deleted after each cycle.
        self.RETENTION_DAYS = env_int("RETENTION_DAYS", 30, minimum=1)
        if self.RETENTION_DAYS <= self.COLLECT_BACKFILL_DAYS:
            raise ConfigError(
                "RETENTION_DAYS must exceed COLLECT_BACKFILL_DAYS, or the collector would "
                "fetch again the days it has just deleted."
            )
        # OpenSky's flights queries can take several seconds on busy airports; 30 s
        # separates slow from stuck.
        self.OPENSKY_TIMEOUT_SECONDS = env_float("OPENSKY_TIMEOUT_SECONDS", 30.0, minimum=0.1)
        # Attempts per request on timeouts, 5xx and malformed bodies (then the range fails),
        # with exponential backoff from OPENSKY_RETRY_BACKOFF_SECONDS: 2, 4, 8 s by default.
        self.OPENSKY_MAX_ATTEMPTS = env_int("OPENSKY_MAX_ATTEMPTS", 4, minimum=1)
        self.OPENSKY_RETRY_BACKOFF_SECONDS = env_float(
            "OPENSKY_RETRY_BACKOFF_SECONDS", 2.0, minimum=0.0
        )
        # Tokens live 30 minutes; renewing one a minute early avoids a 401 mid-cycle.
        self.OPENSKY_TOKEN_MARGIN_SECONDS = env_int("OPENSKY_TOKEN_MARGIN_SECONDS", 60, minimum=0)

    def _min_gap_minutes(self) -> int:
        """Return ``COLLECT_MIN_GAP_MINUTES``: by default the shorter of an hour and the interval.

        A gap longer than the interval would make cycles re-fetch today less
        often than the operator asked for, so an explicit one is refused.
        """
        interval = self.COLLECT_INTERVAL_MINUTES
        gap = env_int("COLLECT_MIN_GAP_MINUTES", MIN_GAP_MINUTES, minimum=0)
        if not env_is_set("COLLECT_MIN_GAP_MINUTES"):
            return min(gap, interval)
        if gap > interval:
            raise ConfigError(
                f"COLLECT_MIN_GAP_MINUTES ({gap}) must not exceed COLLECT_INTERVAL_MINUTES "
                f"({interval}): today's flights would be fetched only every {gap} minutes, "
                f"not every {interval}. Lower COLLECT_MIN_GAP_MINUTES or leave it unset."
            )
        return gap

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
