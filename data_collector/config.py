"""Data Collector settings, read from the environment with local-stack defaults."""

from common.config import env_float, env_int, env_str, sqlalchemy_url

OPENSKY_API_URL = "https://opensky-network.org/api"
OPENSKY_TOKEN_URL = (
    "https://auth.opensky-network.org/auth/realms/opensky-network/protocol/openid-connect/token"
)

# The seed's .env ships these placeholders; they mean "no credentials" (anonymous access).
CREDENTIAL_PLACEHOLDERS = {"your_api_client_id", "your_api_client_secret"}


def opensky_credential(name: str) -> str:
    """Return an OpenSky credential from the environment, or "" when unset or a placeholder."""
    value = env_str(name, "") or ""
    return "" if value in CREDENTIAL_PLACEHOLDERS else value


class Config:
    """Everything the Data Collector reads from its environment, read when instantiated."""

    def __init__(self) -> None:
        self.SQLALCHEMY_DATABASE_URI = sqlalchemy_url(
            env_str("DATA_COLLECTOR_DATABASE_URL", required=True)
        )
        self.SQLALCHEMY_ENGINE_OPTIONS = {
            # A handful per process: gunicorn workers are single-threaded.
            "pool_size": env_int("DB_POOL_SIZE", 5, minimum=1),
            "max_overflow": 5,
            # Survive a database restart without failing the first request after it.
            "pool_pre_ping": True,
            "pool_recycle": 1800,
            # Sessions in UTC, so timestamptz values come back in UTC.
            "connect_args": {"options": "-c timezone=UTC"},
        }
        self.BIND_HOST = env_str("BIND_HOST", "0.0.0.0")
        self.HTTP_PORT = env_int("DATA_COLLECTOR_HTTP_PORT", 5002, minimum=1)
        self.GRPC_PORT = env_int("DATA_COLLECTOR_GRPC_PORT", 50052, minimum=1)
        self.WEB_WORKERS = env_int("WEB_CONCURRENCY", 4, minimum=1)
        # Threads of the gRPC server; DeleteUserInterests is one indexed DELETE.
        self.GRPC_WORKERS = env_int("GRPC_WORKERS", 8, minimum=1)
        self.USER_MANAGER_GRPC_ADDR = env_str("USER_MANAGER_GRPC_ADDR", "localhost:50051")
        # A gRPC call between two services on one network answers in milliseconds;
        # two seconds bounds how long POST /interests waits when the User Manager is sick.
        self.GRPC_TIMEOUT_SECONDS = env_float("GRPC_TIMEOUT_SECONDS", 2.0, minimum=0.1)
        self.REQUEST_TIMEOUT_SECONDS = env_int("REQUEST_TIMEOUT_SECONDS", 30, minimum=1)
        # Interest bodies are tiny; 16 KiB leaves room and stops abuse early (413).
        self.MAX_CONTENT_LENGTH = 16 * 1024
        self.OPENSKY_API_URL = env_str("OPENSKY_API_URL", OPENSKY_API_URL).rstrip("/")
        self.OPENSKY_TOKEN_URL = env_str("OPENSKY_TOKEN_URL", OPENSKY_TOKEN_URL)
        self.OPENSKY_CLIENT_ID = opensky_credential("OPENSKY_CLIENT_ID")
        self.OPENSKY_CLIENT_SECRET = opensky_credential("OPENSKY_CLIENT_SECRET")
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
        self.DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 60, minimum=1)


# --- Start-up notes (logged once by common.launcher when the service starts) ---------------


def startup_warnings(config: Config) -> list[str]:
    """Return what the operator must know at start: OpenSky access without credentials."""
    if config.OPENSKY_CLIENT_ID and config.OPENSKY_CLIENT_SECRET:
        return []
    return [
        "OpenSky credentials are not set (missing, or still the .env placeholders "
        "your_api_client_id / your_api_client_secret): the collector calls OpenSky "
        "anonymously, with the anonymous daily credit limit. Put your API client's id "
        "and secret in OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET (.env) to use yours."
    ]
