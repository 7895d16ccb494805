"""Run one service: migrate its database, then supervise its processes.

``python -m user_manager`` and ``python -m data_collector`` (the container
command and what the local stack runs) come here, each with its
:class:`Service`: the registry, written out in the service's ``__main__.py``,
of its configuration, what gunicorn serves, its other roles and its
migration. The launcher itself stays small: it imports no Flask, SQLAlchemy
or grpcio, and every role is a fresh interpreter:

- ``migrate``: applies migrations (waiting for the database) as the
  database's owner, grants the serving role its tables, and exits; the
  other roles never get the owner's URL;
- ``web``: gunicorn serving the Flask app with several workers;
- ``grpc``: the service's gRPC server, bound once, beside gunicorn;
- ``worker``: the background jobs (scheduler).

Command line: ``python -m <service>`` migrates, then runs every role;
``python -m <service> ROLE [ROLE...]`` runs just those roles (no migration:
an orchestrator runs ``migrate`` on its own); ``python -m <service>
healthcheck [web] [grpc] [database]`` probes a running instance.
"""

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.observability import MULTIPROC_DIR_VARIABLE
from common.observability.logs import configure_logging
from common.process import healthcheck
from common.process.supervisor import Supervisor
from common.settings import BaseConfig, ConfigError

log = logging.getLogger(__name__)


# Gunicorn gives in-flight requests this long after SIGTERM before killing workers.
GRACEFUL_TIMEOUT_SECONDS = 15
# glibc gives each thread that allocates its own malloc arena (up to 8 per core); with
# threaded web workers those arenas hold freed memory and RSS creeps up. Two suffice.
MALLOC_ARENA_MAX = "2"
# An idle client connection is kept this long: a client (or a load balancer) sending
# requests back to back reuses it instead of connecting anew each time.
KEEP_ALIVE_SECONDS = 5
WEB = "web"


@dataclass(frozen=True)
class Service:
    """What the launcher needs to know about a service, handed to it explicitly.

    ``web_app`` is the gunicorn application spec (``module:factory(...)``);
    ``roles`` maps each other role to the module ``python -m`` runs for it;
    ``migrate`` applies the migrations in the calling process (the launcher
    calls it in a child of its own, never in itself).
    """

    name: str
    config: type[BaseConfig]
    web_app: str
    roles: dict[str, str]
    migrate: Callable[[], int]

    @property
    def role_names(self) -> list[str]:
        """Every role, in the order they start."""
        return [WEB, *self.roles]


def gunicorn_command(
    *, name: str, bind: str, workers: int, threads: int, timeout: int, app: str
) -> list[str]:
    """Return the command line that serves ``app`` with gunicorn as service ``name``.

    Threaded workers keep client connections alive between requests: the
    sync worker closes every connection and, since gunicorn 27, waits for
    the client to close its side too, a large share of its time under load
    (docs/performance.md). The benchmark's ceiling app is served with this
    same command line.
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
        f"{name}-web",
        "--config",
        "python:common.web.gunicorn_conf",
        # Gunicorn 27's control socket defaults to one path per user; two services would collide.
        "--no-control-socket",
        app,
    ]


def prepare_metrics_dir(name: str) -> Path:
    """Give every process of this service instance one empty metrics directory (inherited by env).

    prometheus_client's multiprocess mode sums the files its processes write
    there; files of an earlier run would add stale counts, so they go first.
    """
    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    default = Path(tempfile.gettempdir()) / f"{name}-metrics-{os.getpid()}"
    path = Path(given) if given else default
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    return path


def role_command(service: Service, role: str, config: BaseConfig) -> list[str]:
    """Return the command line of one role of the service."""
    if role == WEB:
        return gunicorn_command(
            name=service.name,
            bind=f"{config.BIND_HOST}:{config.HTTP_PORT}",
            workers=config.WEB_WORKERS,
            threads=config.WEB_THREADS,
            timeout=config.REQUEST_TIMEOUT_SECONDS,
            app=service.web_app,
        )
    return [sys.executable, "-m", service.roles[role]]


def serve(service: Service, roles: Sequence[str], *, migrate_first: bool) -> int:
    """Run the roles (after the migrations, if asked) until a signal or a crash."""
    config = service.config()
    configure_logging(config.LOG_LEVEL)
    for warning in [*config.security_warnings(), *config.startup_warnings()]:
        log.warning("%s: %s", service.name, warning)

    prepare_metrics_dir(service.name)
    # Read by glibc when each child starts (an operator's own value wins).
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
    # Signals are handled from here on, so SIGTERM during migrations stops them too.
    supervisor = Supervisor(service.name)
    supervisor.install_signal_handlers()
    if migrate_first:
        migration = supervisor.run("migrate", [sys.executable, "-m", service.name, "migrate"])
        if migration is None:
            return 0
        if migration != 0:
            log.error("%s: migrations failed (exit %s); not starting", service.name, migration)
            return 1
    # Only the migration connects as the database's owner: the serving roles and the worker
    # never see its URL (they serve as the role that can change no schema).
    role_env = dict(os.environ)
    role_env.pop(service.config.MIGRATION_DATABASE_URL_VARIABLE, None)
    for role in roles:
        supervisor.start(role, role_command(service, role, config), env=role_env)
    return supervisor.wait()


def usage(service: Service) -> str:
    """Return the command line's usage line."""
    roles = " | ".join(service.role_names)
    parts = " ".join(f"[{part}]" for part in healthcheck.PARTS)
    return f"usage: python -m {service.name} [migrate | ROLE... ({roles}) | healthcheck {parts}]"


def main(service: Service, args: Sequence[str]) -> int:
    """Command line of ``python -m <service>`` (see the module docstring)."""
    args = list(args)
    try:
        if args == ["migrate"]:
            return service.migrate()
        if args[:1] == ["healthcheck"] and set(args[1:]) <= set(healthcheck.PARTS):
            return healthcheck.check(service.name, service.config(), args[1:] or healthcheck.HALVES)
        if not args:
            return serve(service, service.role_names, migrate_first=True)
        if set(args) <= set(service.role_names):
            return serve(service, args, migrate_first=False)
    except ConfigError as error:
        print(f"{service.name}: {error}", file=sys.stderr)
        return 2
    print(usage(service), file=sys.stderr)
    return 2
