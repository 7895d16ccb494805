"""Settings read from the environment, in one place and with clear failures.

:class:`BaseConfig` reads what both services read; each service's
``config.py`` subclasses it with its own settings. A bad value fails at start
with a sentence naming the variable instead of a stack trace deep inside a
request. This module imports nothing heavy: the launcher reads a service's
configuration before any Flask or SQLAlchemy is loaded.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and why."""


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable's value, or ``default`` when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_is_set(name: str) -> bool:
    """Tell whether the variable is given (not unset or blank): a default may depend on it."""
    return env_str(name) is not None


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the variable as an integer (``default`` when unset)."""
    return _number(name, default, int, "a whole number", minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """Return the variable as a float (``default`` when unset)."""
    return _number(name, default, float, "a number", minimum)


def _number(name: str, default, kind: type, described: str, minimum):
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {described}, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    """Return the variable as a boolean: 1/true/yes/on or 0/false/no/off."""
    raw = env_str(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}.")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """Return the variable's value (lower-cased), which must be one of ``choices``."""
    value = (env_str(name, default) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be {' or '.join(choices)}, got {value!r}.")
    return value


def env_database_url(name: str) -> str | None:
    """Return a PostgreSQL URL as SQLAlchemy wants it (see :func:`sqlalchemy_url`), or None."""
    url = env_str(name)
    return None if url is None else sqlalchemy_url(url)


def sqlalchemy_url(url: str) -> str:
    """Accept ``postgres://`` and plain ``postgresql://`` URLs and pin the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


# The two services share the machine with PostgreSQL: each gets one worker per two cores.
DEFAULT_WEB_WORKERS = max(1, (os.cpu_count() or 2) // 2)


def web_workers() -> int:
    """Return the number of gunicorn worker processes per service (``WEB_CONCURRENCY``).

    The two services share the machine with PostgreSQL: each gets one worker
    per two cores (at least one), whose threads overlap the waits on the
    database. More processes cost memory (a whole app each) and no speed: the
    benchmark in docs/performance.md measured both.
    """
    return env_int("WEB_CONCURRENCY", DEFAULT_WEB_WORKERS, minimum=1)


def web_threads() -> int:
    """Return the request threads of each gunicorn worker (``WEB_THREADS``)."""
    # Requests mostly wait on PostgreSQL or gRPC, which releases the GIL: four threads
    # overlap those waits; more only add GIL contention (docs/performance.md).
    return env_int("WEB_THREADS", 4, minimum=1)


# gRPC metadata values are printable ASCII; a token with spaces or control characters
# could not be sent as ``authorization: Bearer <token>``.
GRPC_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
GRPC_TLS_VARIABLES = ("GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA")
# A server bound here is reachable from this machine only.
LOOPBACK_ADDRESSES = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class GrpcSecurity:
    """How the services' gRPC servers and clients authenticate each other.

    ``token``: when set, every call carries ``authorization: Bearer <token>``
    and servers refuse calls without it, except the standard health service's
    ``Check`` and ``Watch`` (clients' health checking cannot send it; the
    answer is only SERVING or not). ``certificate``, ``private_key``, ``ca``: PEM contents; all
    three or none. With them every connection is mutual TLS: each process
    presents the certificate (as a server and as a client) and accepts only
    a peer whose certificate the CA signed. Values never appear in ``repr``.
    The grpcio side (channels, ports, the token check) is in
    :mod:`common.rpc.security`; this module imports no grpcio.
    """

    token: str | None = field(default=None, repr=False)
    certificate: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    ca: bytes | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        *,
        token: str | None,
        certificate: str | None,
        private_key: str | None,
        ca: str | None,
    ) -> "GrpcSecurity":
        """Validate the settings and read the certificate files (paths) they name."""
        if token is not None and not GRPC_TOKEN_CHARACTERS.fullmatch(token):
            raise ConfigError(
                "GRPC_AUTH_TOKEN must be printable ASCII without spaces (it is sent as gRPC "
                "metadata); generate one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        paths = dict(zip(GRPC_TLS_VARIABLES, (certificate, private_key, ca), strict=True))
        missing = [name for name, path in paths.items() if not path]
        if len(missing) == len(paths):
            return cls(token=token)
        if missing:
            given = [name for name in paths if name not in missing]
            raise ConfigError(
                f"{' and '.join(given)} set but {' and '.join(missing)} not: GRPC_TLS_CERT, "
                "GRPC_TLS_KEY and GRPC_TLS_CA turn on mutual TLS together (set all three, "
                "or none for plaintext gRPC)."
            )
        contents = {name: _read_pem(name, path) for name, path in paths.items()}
        return cls(
            token=token,
            certificate=contents["GRPC_TLS_CERT"],
            private_key=contents["GRPC_TLS_KEY"],
            ca=contents["GRPC_TLS_CA"],
        )

    @property
    def tls(self) -> bool:
        """True when connections are mutual TLS."""
        return self.certificate is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call sends (the token, when there is one)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def describe(self) -> str:
        """Say, for the log, how calls are protected (never the values)."""
        transport = "mutual TLS" if self.tls else "plaintext"
        return f"{transport}, {'token required' if self.token else 'no token'}"


def _read_pem(variable: str, path: str) -> bytes:
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{variable}: cannot read {path} ({error.strerror}).") from None
    if b"-----BEGIN " not in content:
        raise ConfigError(f"{variable}: {path} is not a PEM file.")
    return content


class BaseConfig:
    """The settings both services read; a service's ``Config`` adds its own after these.

    Flask takes every upper-case attribute as a config key. A subclass sets
    ``DATABASE_URL_VARIABLE`` (the name of its required database URL: the
    serving role, which reads and writes rows), so that a missing one is
    reported by name when the app is built,
    ``MIGRATION_DATABASE_URL_VARIABLE`` (the owner role, which the
    ``migrate`` process alone connects as; unset: the serving URL) and
    ``PUBLIC_URL_VARIABLE`` (its own, since one ``.env`` serves both).
    """

    DATABASE_URL_VARIABLE = ""
    MIGRATION_DATABASE_URL_VARIABLE = ""
    PUBLIC_URL_VARIABLE = ""

    def __init__(self) -> None:
        self.SQLALCHEMY_DATABASE_URI = env_database_url(self.DATABASE_URL_VARIABLE)
        self.MIGRATION_DATABASE_URL = (
            env_database_url(self.MIGRATION_DATABASE_URL_VARIABLE) or self.SQLALCHEMY_DATABASE_URI
        )
        self.BIND_HOST = env_str("BIND_HOST", "0.0.0.0")
        # gRPC has its own listening address: it serves only the peer service, so it can stay
        # on a private interface while REST faces clients.
        self.GRPC_BIND_HOST = env_str("GRPC_BIND_HOST") or self.BIND_HOST
        self.GRPC_SECURITY = GrpcSecurity.load(
            token=env_str("GRPC_AUTH_TOKEN"),
            certificate=env_str("GRPC_TLS_CERT"),
            private_key=env_str("GRPC_TLS_KEY"),
            ca=env_str("GRPC_TLS_CA"),
        )
        self.WEB_WORKERS = web_workers()
        self.WEB_THREADS = web_threads()
        # Worst case for one request before gunicorn recycles the worker.
        self.REQUEST_TIMEOUT_SECONDS = env_int("REQUEST_TIMEOUT_SECONDS", 30, minimum=1)
        # Threads of the gRPC server; each call is one indexed statement.
        self.GRPC_WORKERS = env_int("GRPC_WORKERS", 8, minimum=1)
        # A gRPC call between two services on one network answers in milliseconds;
        # two seconds bounds how long a client request waits for a sick peer.
        self.GRPC_TIMEOUT_SECONDS = env_float("GRPC_TIMEOUT_SECONDS", 2.0, minimum=0.1)
        # One connection per request thread (WEB_THREADS) plus one for the odd extra.
        self.DB_POOL_SIZE = env_int("DB_POOL_SIZE", 5, minimum=1)
        self.DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 60, minimum=1)
        # What the serving processes' (web, grpc) connections may cost before PostgreSQL
        # ends them (0: no limit); the worker's and the migrations' are in
        # common.db.connections.session_limits.
        # A request's statements are indexed and answer in milliseconds: 10 s is far beyond
        # any of them and well inside REQUEST_TIMEOUT_SECONDS, so a runaway query ends in a
        # 503 that frees its connection rather than in gunicorn killing the worker.
        self.DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 10000, minimum=0)
        # A request waits for another request's short transaction on the same email or key,
        # or for the outbox relay's row during one gRPC call (GRPC_TIMEOUT_SECONDS); behind a
        # migration's table lock it gives up after 5 s (503, retried) instead of piling up.
        self.DB_LOCK_TIMEOUT_MS = env_int("DB_LOCK_TIMEOUT_MS", 5000, minimum=0)
        # A serving transaction idles only between its own statements and during one gRPC
        # call: open longer, it is a bug holding locks and an old snapshot (which stalls
        # vacuum), and PostgreSQL ends the session.
        self.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = env_int(
            "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10000, minimum=0
        )
        # The worker's statements are bulk (a page of flights upserted, a day of them
        # deleted by retention) and a job may wait on OpenSky (two minutes at worst, with
        # retries) inside a transaction: five minutes bounds both and stops only a runaway.
        self.DB_WORKER_TIMEOUT_MS = env_int("DB_WORKER_TIMEOUT_MS", 300000, minimum=0)
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
        # Where clients reach this service (next-page links are built from it), and how
        # many proxies in front of it set X-Forwarded-*: exactly those are trusted, and a
        # client's own Host or X-Forwarded-* headers never are.
        self.PUBLIC_URL = env_str(self.PUBLIC_URL_VARIABLE, "")
        self.TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0, minimum=0)

        # Who may call what (common.web.auth). Off keeps the original open flows, for a
        # laptop; anything reachable by others runs with it on.
        self.AUTH_MODE = env_choice("AUTH_MODE", "off", ("off", "on"))
        # Empty: that kind of credential is not accepted.
        self.API_KEYS_FILE = env_str("API_KEYS_FILE", "")
        self.JWT_JWKS_URL = env_str("JWT_JWKS_URL", "")
        self.JWT_ISSUER = env_str("JWT_ISSUER", "")
        self.JWT_AUDIENCE = env_str("JWT_AUDIENCE", "")
        self.JWT_EMAIL_CLAIM = env_str("JWT_EMAIL_CLAIM", "email")
        if self.AUTH_MODE == "on" and not (self.API_KEYS_FILE or self.JWT_JWKS_URL):
            raise ConfigError("AUTH_MODE=on needs API_KEYS_FILE or JWT_JWKS_URL (or both).")
        if self.JWT_JWKS_URL and not (self.JWT_ISSUER and self.JWT_AUDIENCE):
            raise ConfigError("JWT_JWKS_URL needs JWT_ISSUER and JWT_AUDIENCE too.")

    def startup_warnings(self) -> list[str]:
        """Return what the operator should read in the log at start."""
        if self.AUTH_MODE == "off" and not is_loopback(self.BIND_HOST):
            return [
                f"AUTH_MODE=off while listening on {self.BIND_HOST}: anyone who can reach "
                "this port can read and change every user. Set AUTH_MODE=on (with "
                "API_KEYS_FILE or JWT_JWKS_URL), or BIND_HOST=127.0.0.1."
            ]
        return []

    def security_warnings(self) -> list[str]:
        """Return the risks of this configuration the log should name at start."""
        loopback = is_loopback(self.GRPC_BIND_HOST)
        if self.GRPC_SECURITY.token or loopback:
            return []
        return [
            f"GRPC_AUTH_TOKEN is not set: the gRPC server on {self.GRPC_BIND_HOST} serves any "
            "caller that reaches it. Set the same GRPC_AUTH_TOKEN on both services."
        ]


def is_loopback(host: str) -> bool:
    """Tell whether a bind address is reachable from this host only."""
    return host == "localhost" or host == "::1" or host.startswith("127.")
