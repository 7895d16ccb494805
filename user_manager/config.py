"""User Manager settings, read from the environment with local-stack defaults."""

from common.config import env_float, env_int, env_str, sqlalchemy_url


class Config:
    """Everything the User Manager reads from its environment, read when instantiated."""

    def __init__(self) -> None:
        self.SQLALCHEMY_DATABASE_URI = sqlalchemy_url(
            env_str("USER_MANAGER_DATABASE_URL", required=True)
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
        self.HTTP_PORT = env_int("USER_MANAGER_HTTP_PORT", 5001, minimum=1)
        self.GRPC_PORT = env_int("USER_MANAGER_GRPC_PORT", 50051, minimum=1)
        self.WEB_WORKERS = env_int("WEB_CONCURRENCY", 4, minimum=1)
        # Threads of the gRPC server; each CheckUserExists is one indexed lookup.
        self.GRPC_WORKERS = env_int("GRPC_WORKERS", 8, minimum=1)
        self.DATA_COLLECTOR_GRPC_ADDR = env_str("DATA_COLLECTOR_GRPC_ADDR", "localhost:50052")
        # A gRPC call between two services on one network answers in milliseconds;
        # two seconds bounds how long a client request waits for a sick peer.
        self.GRPC_TIMEOUT_SECONDS = env_float("GRPC_TIMEOUT_SECONDS", 2.0, minimum=0.1)
        # Worst case for one request before gunicorn recycles the worker.
        self.REQUEST_TIMEOUT_SECONDS = env_int("REQUEST_TIMEOUT_SECONDS", 30, minimum=1)
        # User bodies are a few hundred bytes; 64 KiB leaves room and stops abuse early (413).
        self.MAX_CONTENT_LENGTH = 64 * 1024
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
        self.DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 60, minimum=1)
