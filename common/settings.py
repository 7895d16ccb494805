"""Settings read from the environment, in one place and with clear failures.

:class:`BaseConfig` reads what both services read; each service's
``config.py`` subclasses it with its own settings. A bad value fails at start
with a sentence naming the variable instead of a stack trace deep inside a
request. This module imports nothing heavy: the launcher reads a service's
configuration before any Flask or SQLAlchemy is loaded.
"""

import os


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


def web_workers() -> int:
    """Return the number of gunicorn worker processes per service (``WEB_CONCURRENCY``)."""
    # Four processes keep two cores busy while some threads wait on PostgreSQL.
    return env_int("WEB_CONCURRENCY", 4, minimum=1)


def web_threads() -> int:
    """Return the request threads of each gunicorn worker (``WEB_THREADS``)."""
    # Requests mostly wait on PostgreSQL or gRPC, which releases the GIL: four threads
    # overlap those waits; more only add GIL contention (docs/performance.md).
    return env_int("WEB_THREADS", 4, minimum=1)


class BaseConfig:
    """The settings both services read; a service's ``Config`` adds its own after these.

    Flask takes every upper-case attribute as a config key. A subclass sets
    ``DATABASE_URL_VARIABLE`` (the name of its required database URL), so
    that a missing one is reported by name when the app is built.
    """

    DATABASE_URL_VARIABLE = ""

    def __init__(self) -> None:
        self.SQLALCHEMY_DATABASE_URI = env_database_url(self.DATABASE_URL_VARIABLE)
        self.BIND_HOST = env_str("BIND_HOST", "0.0.0.0")
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
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO")

    def startup_warnings(self) -> list[str]:
        """Return what the operator should read in the log at start (nothing by default)."""
        return []
