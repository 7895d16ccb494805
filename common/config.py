"""Read settings from the environment, in one place and with clear failures.

Each service's ``config.py`` builds its ``Config`` from these helpers, so a bad
value fails at start with a sentence naming the variable instead of a stack
trace deep inside a request.
"""

import os


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and why."""


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    """Return the variable's value, or ``default`` when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if required and default is None:
        raise ConfigError(f"{name} is not set: the service cannot start without it.")
    return default


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the variable as an integer (``default`` when unset)."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}.")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """Return the variable as a float (``default`` when unset)."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}.") from None
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


def web_workers() -> int:
    """Return the number of gunicorn worker processes per service (``WEB_CONCURRENCY``)."""
    # Four processes keep two cores busy while some threads wait on PostgreSQL.
    return env_int("WEB_CONCURRENCY", 4, minimum=1)


def web_threads() -> int:
    """Return the request threads of each gunicorn worker (``WEB_THREADS``)."""
    # Requests mostly wait on PostgreSQL or gRPC, which releases the GIL: four threads
    # overlap those waits; more only add GIL contention (the benchmark, README).
    return env_int("WEB_THREADS", 4, minimum=1)


def database_engine_options() -> dict:
    """Return the SQLAlchemy engine options both services use (``DB_POOL_SIZE`` per process)."""
    return {
        # One per request thread (WEB_THREADS, 4 by default) plus one for the odd extra.
        "pool_size": env_int("DB_POOL_SIZE", 5, minimum=1),
        "max_overflow": 5,
        # No pre-ping on every checkout: common.db_connections pings only idle connections.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
        # Sessions in UTC, so timestamptz values come back in UTC.
        # A database that does not answer fails a request (503) instead of hanging it.
        "connect_args": {"options": "-c timezone=UTC", "connect_timeout": 5},
        # Error messages would otherwise carry the statement's values (IBANs, tax codes)
        # into the logs.
        "hide_parameters": True,
    }


def sqlalchemy_url(url: str) -> str:
    """Accept ``postgres://`` and plain ``postgresql://`` URLs and pin the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url
