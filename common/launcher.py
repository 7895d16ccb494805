"""Run one service: migrate its database, then supervise its processes.

``python -m user_manager`` and ``python -m data_collector`` (the container
command and what the local stack runs) come here. The launcher itself stays
small: it imports no Flask, SQLAlchemy or grpcio, and every role is a fresh
interpreter:

- ``migrate``: applies migrations (waiting for the database) and exits;
- ``web``: gunicorn serving the Flask app with several workers;
- ``grpc_server``: the service's gRPC server, bound once, beside gunicorn;
- ``worker``: the background jobs (scheduler), when the service has any.
"""

import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common.logs import configure_logging
from common.supervisor import Supervisor

log = logging.getLogger(__name__)

# Read by prometheus_client in every child (common.metrics); not imported here to keep the
# launcher free of Flask and prometheus_client.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Gunicorn gives in-flight requests this long after SIGTERM before killing workers.
GRACEFUL_TIMEOUT_SECONDS = 15
# glibc gives each thread that allocates its own malloc arena (up to 8 per core); with
# threaded web workers those arenas hold freed memory and RSS creeps up. Two suffice.
MALLOC_ARENA_MAX = "2"
# An idle client connection is kept this long: a client (or a load balancer) sending
# requests back to back reuses it instead of connecting anew each time.
KEEP_ALIVE_SECONDS = 5


def gunicorn_command(
    *, package: str, bind: str, workers: int, threads: int, timeout: int, app: str | None = None
) -> list[str]:
    """Return the command line that serves ``package``'s app (or ``app``) with gunicorn.

    Threaded workers keep client connections alive between requests: the
    sync worker closes every connection and, since gunicorn 27, waits for
    the client to close its side too, which py-spy showed as 14% of a sync
    worker's time. The benchmark's ceiling app is served with this same
    command line.
    """
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT_SECONDS),
        "--name",
        f"{package}-web",
        "--config",
        "python:common.gunicorn_conf",
        # Gunicorn 27's control socket defaults to one path per user; two services would collide.
        "--no-control-socket",
        app or f"{package}.app:create_app(migrations=False)",
    ]


def migrate(package: str) -> int:
    """Apply the package's migrations, waiting for its database to accept connections."""
    from common.database import upgrade_database

    app_module = importlib.import_module(f"{package}.app")
    db = importlib.import_module(f"{package}.models").db
    app = app_module.create_app()
    configure_logging(app.config["LOG_LEVEL"])
    with app.app_context():
        engine = db.engine
    upgrade_database(
        app, engine, app_module.MIGRATIONS_DIR, timeout=app.config["DB_CONNECT_TIMEOUT_SECONDS"]
    )
    return 0


def prepare_metrics_dir(package: str) -> Path:
    """Give every process of this service instance one empty metrics directory (inherited by env).

    prometheus_client's multiprocess mode sums the files its processes write
    there; files of an earlier run would add stale counts, so they go first.
    """
    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    default = Path(tempfile.gettempdir()) / f"{package}-metrics-{os.getpid()}"
    path = Path(given) if given else default
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    return path


def serve(package: str, roles: Sequence[str]) -> int:
    """Migrate, then run gunicorn and the given roles until a signal or a crash."""
    config_module = importlib.import_module(f"{package}.config")
    config = config_module.Config()
    configure_logging(config.LOG_LEVEL)
    # A service may name what its operator should know at start (data_collector: OpenSky access).
    for warning in getattr(config_module, "startup_warnings", lambda _config: [])(config):
        log.warning("%s: %s", package, warning)

    prepare_metrics_dir(package)
    # Read by glibc when each child starts (an operator's own value wins).
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
    # Signals are handled from here on, so SIGTERM during migrations stops them too.
    supervisor = Supervisor(package)
    supervisor.install_signal_handlers()
    migration = supervisor.run("migrate", [sys.executable, "-m", package, "migrate"])
    if migration is None:
        return 0
    if migration != 0:
        log.error("%s: migrations failed (exit %s); not starting", package, migration)
        return 1
    supervisor.start(
        "web",
        gunicorn_command(
            package=package,
            bind=f"{config.BIND_HOST}:{config.HTTP_PORT}",
            workers=config.WEB_WORKERS,
            threads=config.WEB_THREADS,
            timeout=config.REQUEST_TIMEOUT_SECONDS,
        ),
    )
    for role in roles:
        supervisor.start(role, [sys.executable, "-m", f"{package}.{role}"])
    return supervisor.wait()


def main(package: str, argv: Sequence[str], *, roles: Sequence[str]) -> int:
    """Command line of ``python -m <package> [migrate]``."""
    if list(argv[1:]) == ["migrate"]:
        return migrate(package)
    if argv[1:]:
        print(f"usage: python -m {package} [migrate]", file=sys.stderr)
        return 2
    return serve(package, roles)
