"""Settings read from the environment, in one place and with clear failures.

:class:`ServiceSettings` declares what every service reads; each service's
``config.py`` subclasses it with its own fields, one line each: the type,
the default, the range, and a comment saying why that value. pydantic-settings
reads and converts them; a bad value stops the start with one sentence
naming the variable, the value given and what is allowed (:class:`ConfigError`)
instead of a stack trace deep inside a request. This module imports no
Flask or SQLAlchemy: the launcher reads a service's settings before either
is loaded.
"""

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError
from common.observability.logs import DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL

__all__ = ["ConfigError"]


# What a value must be, by the pydantic error it failed with (its context fills the braces).
ALLOWED = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false (1, yes, on or 0, no, off)",
    "finite_number": "a finite number",
    "greater_than_equal": "at least {ge}",
    "greater_than": "more than {gt}",
    "less_than_equal": "at most {le}",
    "literal_error": "{expected}",
    "url": "a URL ({schemes}) with a host and no query string, such as {example}",
    "host": "a host name or address without a port (the port is a setting of its own)",
}


def refusal(error: ValidationError) -> str:
    """Say in one sentence what is wrong with the first value pydantic refused."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])  # a validator's own sentence
    variable = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return f"{variable} must be set."
    allowed = ALLOWED.get(first["type"])
    if allowed is None:
        message = first["msg"]
        return f"{variable}: {message[0].lower()}{message[1:]}, got {first['input']!r}."
    # Bounds as written: 2147483647, not 2.14748e+09; 0.1, not 0.10000000000000001.
    context = {
        key: f"{value:g}" if isinstance(value, float) else value
        for key, value in first.get("ctx", {}).items()
    }
    return f"{variable} must be {allowed.format(**context)}, got {first['input']!r}."


# ``<VARIABLE>_FILE`` names a file holding a setting's value.
FILE_SUFFIX = "_FILE"


class EnvironmentSettings(BaseSettings):
    """Settings read from environment variables named exactly like the fields (or their alias).

    A blank value means unset (compose passes an unset ``${VAR:-}`` on as
    blank), so the default applies; other values lose their surrounding
    spaces. Any setting may instead come from a file, named by
    ``<VARIABLE>_FILE``: an orchestrator mounts its secrets as files, which
    unlike the environment no other process of the container can read from
    ``/proc``, and which no crash report or ``docker inspect`` shows. Giving
    both is refused. A value that cannot be used raises :class:`ConfigError`
    with one sentence, never pydantic's report of every field.
    """

    # No setting means infinity: every number ends up in a timeout, a date or a count.
    model_config = SettingsConfigDict(case_sensitive=True, allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(refusal(error)) from None

    @model_validator(mode="before")
    @classmethod
    def _blank_means_unset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = cls._read_value_files(values)
        stripped = {key: v.strip() if isinstance(v, str) else v for key, v in values.items()}
        return {key: value for key, value in stripped.items() if value != ""}

    @classmethod
    def _read_value_files(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Add the value of each setting given as ``<VARIABLE>_FILE``."""
        values = dict(values)
        for variable in cls.variables():
            path = os.environ.get(variable + FILE_SUFFIX, "").strip()
            if variable.endswith(FILE_SUFFIX) or not path:
                continue
            given = values.get(variable)
            if given is not None and str(given).strip():
                raise ValueError(
                    f"{variable} and {variable}{FILE_SUFFIX} are both set: give the value once."
                )
            try:
                values[variable] = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not text"
                raise ValueError(
                    f"{variable}{FILE_SUFFIX}: cannot read {path} ({reason})."
                ) from None
        return values

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Map each environment variable the class reads to the attribute it sets."""
        return {info.alias or name: name for name, info in cls.model_fields.items()}


def url_with(*schemes: str, example: str) -> AfterValidator:
    """Return a validator of a URL with one of ``schemes`` and a host; blank stays blank.

    Anything else (a bare word, a path, a query string the code would append
    to) could only fail at every use, far from the setting that caused it.
    """

    def check(value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        try:
            usable = bool(parts.hostname) and (parts.port is None or parts.port > 0)
        except ValueError:  # a port that is no number, or beyond 65535
            usable = False
        if parts.scheme not in schemes or not usable or parts.query or parts.fragment:
            context = {"schemes": " or ".join(schemes), "example": example}
            raise PydanticCustomError("url", "not a usable URL", context)
        return value

    return AfterValidator(check)


def host_name(value: str | None) -> str | None:
    """Return ``value`` if it names a host (an IPv6 address has colons; host:port does not)."""
    if value and ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise PydanticCustomError("host", "not a host") from None
    return value


def sqlalchemy_url(url: str) -> str:
    """Accept ``postgres://`` and plain ``postgresql://`` URLs and pin the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


# The types of settings, for one-line fields.
Port = Annotated[int, Field(ge=1, le=65535)]
# PostgreSQL's timeouts are 32-bit milliseconds; a larger one makes it refuse every connection.
PostgresMilliseconds = Annotated[int, Field(ge=0, le=2**31 - 1)]
# Ceilings of durations a value beyond would not be a choice but a typo: a peer slower than an
# hour is down; a retry waits at most a day; data is kept ten years at most (far beyond, the
# dates it computes leave the calendar's range).
HOUR_SECONDS = 3600
DAY_SECONDS = 86400
MAX_RETENTION_DAYS = 3650
DatabaseUrl = Annotated[str, AfterValidator(sqlalchemy_url)] | None
# A choice given in any case (AUTH_MODE=ON is on).
AnyCase = BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value)
UpperCase = BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value)

# Every service shares the machine with PostgreSQL and the other services, so none takes
# every core: each gets one worker per two cores (Kubernetes sets each its own number).
DEFAULT_WEB_WORKERS = max(1, (os.cpu_count() or 2) // 2)

# gRPC metadata values are printable ASCII; a token with spaces or control characters
# could not be sent as ``authorization: Bearer <token>``.
GRPC_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
GRPC_TLS_VARIABLES = ("GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA")


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


# The settings each service names after itself, since one .env serves every service: the
# attribute, and the variable's name after the service's prefix.
SERVICE_NAMED = {
    "HTTP_PORT": "HTTP_PORT",
    "GRPC_PORT": "GRPC_PORT",
    "SQLALCHEMY_DATABASE_URI": "DATABASE_URL",
    "MIGRATION_DATABASE_URL": "MIGRATION_DATABASE_URL",
    "PUBLIC_URL": "PUBLIC_URL",
}


def named_after(
    service: str, *, http_port: int, grpc_port: int | None = None
) -> SettingsConfigDict:
    """Return a service's ``model_config``: its own settings read as ``<service>_HTTP_PORT``....

    ``http_port`` and ``grpc_port`` are the defaults of its ports (no
    ``grpc_port``: it serves no gRPC, and no gRPC port is read).
    """

    def variable(attribute: str) -> str:
        suffix = SERVICE_NAMED.get(attribute)
        return attribute if suffix is None else f"{service}_{suffix}"

    ports = {"HTTP_PORT": http_port, "GRPC_PORT": grpc_port}
    return SettingsConfigDict(alias_generator=variable, service_ports=ports)


class ServiceSettings(EnvironmentSettings):
    """The settings every service reads; a service's ``Settings`` adds its own after these.

    Flask takes every upper-case attribute as a config key. A subclass sets
    ``model_config = named_after("<SERVICE>", http_port=..., grpc_port=...)``:
    its ports (with those defaults), its database URL (the serving role, which reads and writes
    rows; required, and a missing one is reported by name when the app is
    built), its migration URL (the owner role, which the ``migrate`` process
    alone connects as; unset: the serving URL) and its public URL are then
    read from variables named after it, such as ``<SERVICE>_DATABASE_URL``.
    ``DATABASE_URL_VARIABLE``, ``MIGRATION_DATABASE_URL_VARIABLE`` and
    ``PUBLIC_URL_VARIABLE`` give those names to the code that handles the
    variables themselves.
    """

    DATABASE_URL_VARIABLE: ClassVar[str] = ""
    MIGRATION_DATABASE_URL_VARIABLE: ClassVar[str] = ""
    PUBLIC_URL_VARIABLE: ClassVar[str] = ""

    # Their defaults come from named_after; a service without gRPC reads no GRPC_PORT.
    HTTP_PORT: Port
    GRPC_PORT: Port | None = None
    SQLALCHEMY_DATABASE_URI: DatabaseUrl = Field(None, repr=False)
    MIGRATION_DATABASE_URL: DatabaseUrl = Field(
        default_factory=lambda given: given["SQLALCHEMY_DATABASE_URI"], repr=False
    )
    BIND_HOST: str = "0.0.0.0"
    # gRPC has its own listening address: it serves only the peer service, so it can stay
    # on a private interface while REST faces clients.
    GRPC_BIND_HOST: str = Field(default_factory=lambda given: given["BIND_HOST"])
    # Unset: no token, and plaintext (GrpcSecurity says what each turns on).
    GRPC_AUTH_TOKEN: str | None = Field(None, repr=False)
    GRPC_TLS_CERT: str | None = None
    GRPC_TLS_KEY: str | None = None
    GRPC_TLS_CA: str | None = None
    # Gunicorn worker processes: more cost memory (a whole app each) and no speed, as the
    # benchmark in docs/performance.md measured.
    WEB_WORKERS: int = Field(DEFAULT_WEB_WORKERS, ge=1, alias="WEB_CONCURRENCY")
    # Requests mostly wait on PostgreSQL or gRPC, which releases the GIL: four threads
    # overlap those waits; more only add GIL contention (docs/performance.md).
    WEB_THREADS: int = Field(4, ge=1)
    # Worst case for one request before gunicorn recycles the worker.
    REQUEST_TIMEOUT_SECONDS: int = Field(30, ge=1)
    # Threads of the gRPC server; each call is one indexed statement.
    GRPC_WORKERS: int = Field(8, ge=1)
    # A gRPC call between two services on one network answers in milliseconds;
    # two seconds bounds how long a client request waits for a sick peer.
    GRPC_TIMEOUT_SECONDS: float = Field(2.0, ge=0.1)
    # One connection per request thread (WEB_THREADS) plus one for the odd extra.
    DB_POOL_SIZE: int = Field(5, ge=1)
    DB_CONNECT_TIMEOUT_SECONDS: int = Field(60, ge=1)
    # What the serving processes' (web, grpc) connections may cost before PostgreSQL
    # ends them (0: no limit); the worker's and the migrations' are in
    # common.db.connections.session_limits.
    # A request's statements are indexed and answer in milliseconds: 10 s is far beyond
    # any of them and well inside REQUEST_TIMEOUT_SECONDS, so a runaway query ends in a
    # 503 that frees its connection rather than in gunicorn killing the worker.
    DB_STATEMENT_TIMEOUT_MS: PostgresMilliseconds = 10000
    # A request waits for another request's short transaction on the same email or key,
    # or for the outbox relay's row during one gRPC call (GRPC_TIMEOUT_SECONDS); behind a
    # migration's table lock it gives up after 5 s (503, retried) instead of piling up.
    DB_LOCK_TIMEOUT_MS: PostgresMilliseconds = 5000
    # A serving transaction idles only between its own statements and during one gRPC
    # call: open longer, it is a bug holding locks and an old snapshot (which stalls
    # vacuum), and PostgreSQL ends the session.
    DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: PostgresMilliseconds = 10000
    # The worker's statements are bulk (a page of flights upserted, a day of them
    # deleted by retention) and a job may wait on OpenSky (two minutes at worst, with
    # retries) inside a transaction: five minutes bounds both and stops only a runaway.
    DB_WORKER_TIMEOUT_MS: PostgresMilliseconds = 300000
    LOG_LEVEL: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], UpperCase] = (
        DEFAULT_LOG_LEVEL
    )
    # text: a readable line per event; json: a JSON object per line.
    LOG_FORMAT: Annotated[Literal["text", "json"], AnyCase] = DEFAULT_LOG_FORMAT
    # Where clients reach this service (next-page links are built from it), and how
    # many proxies in front of it set X-Forwarded-*: exactly those are trusted, and a
    # client's own Host or X-Forwarded-* headers never are.
    PUBLIC_URL: Annotated[str, url_with("http", "https", example="https://api.example.com")] = ""
    TRUSTED_PROXIES: int = Field(0, ge=0)

    # Who may call what (common.web.auth). Off keeps the original open flows, for a
    # laptop; anything reachable by others runs with it on.
    AUTH_MODE: Annotated[Literal["off", "on"], AnyCase] = "off"
    # Empty: that kind of credential is not accepted.
    API_KEYS_FILE: str = ""
    JWT_JWKS_URL: Annotated[
        str, url_with("http", "https", example="https://id.example.com/.well-known/jwks.json")
    ] = ""
    JWT_ISSUER: str = ""
    JWT_AUDIENCE: str = ""
    JWT_EMAIL_CLAIM: str = "email"

    _grpc_security: GrpcSecurity = PrivateAttr()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        names = {attribute: variable for variable, attribute in cls.variables().items()}
        if names["HTTP_PORT"] == "HTTP_PORT":
            raise TypeError(f'{cls.__name__}: set model_config = named_after("<SERVICE>", ...)')
        ports = cls.model_config["service_ports"]
        for attribute, default in ports.items():
            cls.model_fields[attribute].default = default
        if ports["GRPC_PORT"] is None:
            # A ClassVar, not a field: no <SERVICE>_GRPC_PORT is read (or documented).
            del cls.model_fields["GRPC_PORT"]
            cls.GRPC_PORT = None
        cls.model_rebuild(force=True)
        cls.DATABASE_URL_VARIABLE = names["SQLALCHEMY_DATABASE_URI"]
        cls.MIGRATION_DATABASE_URL_VARIABLE = names["MIGRATION_DATABASE_URL"]
        cls.PUBLIC_URL_VARIABLE = names["PUBLIC_URL"]

    @model_validator(mode="after")
    def _check_access_control(self) -> Self:
        if self.AUTH_MODE == "on" and not (self.API_KEYS_FILE or self.JWT_JWKS_URL):
            raise ValueError("AUTH_MODE=on needs API_KEYS_FILE or JWT_JWKS_URL (or both).")
        if self.JWT_JWKS_URL and not (self.JWT_ISSUER and self.JWT_AUDIENCE):
            raise ValueError("JWT_JWKS_URL needs JWT_ISSUER and JWT_AUDIENCE too.")
        return self

    @model_validator(mode="after")
    def _load_grpc_security(self) -> Self:
        self._grpc_security = GrpcSecurity.load(
            token=self.GRPC_AUTH_TOKEN,
            certificate=self.GRPC_TLS_CERT,
            private_key=self.GRPC_TLS_KEY,
            ca=self.GRPC_TLS_CA,
        )
        return self

    # Upper case: Flask copies upper-case attributes into the app's configuration.
    @property
    def GRPC_SECURITY(self) -> GrpcSecurity:  # noqa: N802
        """How this service's gRPC server and clients authenticate each other."""
        return self._grpc_security

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
        if self.GRPC_PORT is None or self.GRPC_SECURITY.token or loopback:
            return []
        return [
            f"GRPC_AUTH_TOKEN is not set: the gRPC server on {self.GRPC_BIND_HOST} serves any "
            "caller that reaches it. Set the same GRPC_AUTH_TOKEN on both services."
        ]


class BrokerSettings(EnvironmentSettings):
    """The broker's settings, for the services that publish or consume (a mixin).

    ``class Settings(ServiceSettings, BrokerSettings)``: the same variables,
    with the same defaults, in every service that talks to the broker.
    """

    # The embedded nats-server of make run and the tests listens there.
    NATS_URL: Annotated[str, url_with("nats", "tls", example="nats://nats:4222")] = (
        "nats://127.0.0.1:4222"
    )
    # Copies of each stream in a clustered broker: 1 for one server, 3 in production (a
    # stream stays available with one server down); never more than the cluster's servers.
    NATS_STREAM_REPLICAS: int = Field(1, ge=1, le=5)
    # A message handed to a consumer and not acknowledged within this is delivered again, to
    # any replica: how long a replica that died mid-batch delays its messages. A live one
    # tells the broker it is still working every third of it, so a slow batch is not redone.
    CONSUMER_ACK_WAIT_SECONDS: float = Field(30.0, ge=1, le=HOUR_SECONDS)
    # A message that failed is delivered again after this, then twice as long after each
    # failure: a mail server down for a minute is tried again a few times, not hammered ...
    CONSUMER_RETRY_FIRST_SECONDS: float = Field(1.0, ge=0.01, le=DAY_SECONDS)
    # ... and never waits longer than this once it is back.
    CONSUMER_RETRY_MAX_SECONDS: float = Field(60.0, gt=0, le=DAY_SECONDS)

    @model_validator(mode="after")
    def _check_retry_range(self) -> Self:
        if self.CONSUMER_RETRY_MAX_SECONDS < self.CONSUMER_RETRY_FIRST_SECONDS:
            raise ValueError(
                "CONSUMER_RETRY_MAX_SECONDS must be at least CONSUMER_RETRY_FIRST_SECONDS "
                f"({self.CONSUMER_RETRY_FIRST_SECONDS:g}), got {self.CONSUMER_RETRY_MAX_SECONDS:g}."
            )
        return self


def is_loopback(host: str) -> bool:
    """Tell whether a bind address is reachable from this host only."""
    return host == "localhost" or host == "::1" or host.startswith("127.")
