"""Run one service: migrate its database, then run and supervise its roles.

``python -m <service>`` (the container command and what the local stack
runs) comes here with the service's declaration (:class:`common.service.Service`,
in its ``app.py``): its settings, what gunicorn serves, its other roles and
its migrations. The roles:

- ``migrate``: applies migrations (waiting for the database) as the
  database's owner, grants the serving role its tables, and exits; the
  other roles never get the owner's URL;
- ``web``: gunicorn serving the Flask app with its workers;
- ``grpc``: the service's gRPC server, bound once;
- ``worker``: the background jobs (scheduler).

``grpc`` and ``worker`` run on threads, so they share one process: a
process that starts them forks nothing afterwards (grpcio is not
fork-safe). ``python -m <service>`` migrates, then starts ``python -m
<service> web`` (which becomes gunicorn) and one process for the other roles
(``python -m <service> grpc worker``), and supervises both; the launcher
itself loads no Flask, SQLAlchemy, grpcio or pydantic (its children read the
settings) and keeps the owner's URL to itself. ``python -m <service> ROLE [ROLE...]``
runs just those roles, without migrating (an orchestrator runs ``migrate``
on its own): ``web`` alone becomes gunicorn, the others run right in it.
``python -m <service> healthcheck [web] [grpc] [database] [worker]`` probes a
running instance.
"""

import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from common.errors import ConfigError
from common.observability import MULTIPROC_DIR_VARIABLE
from common.observability.logs import DEFAULT_LOG_LEVEL, configure_logging, logging_variable
from common.process import healthcheck
from common.process.supervisor import Supervisor
from common.service import WEB, Service

if TYPE_CHECKING:
    from common.settings import ServiceSettings

log = logging.getLogger(__name__)


# Gunicorn gives in-flight requests this long after SIGTERM before killing workers.
GRACEFUL_TIMEOUT_SECONDS = 15
# glibc gives each thread that allocates its own malloc arena (up to 8 per core); with
# threaded web workers those arenas hold freed memory and RSS creeps up. Two suffice.
MALLOC_ARENA_MAX = "2"
# An idle client connection is kept this long: a client (or a load balancer) sending
# requests back to back reuses it instead of connecting anew each time.
KEEP_ALIVE_SECONDS = 5


class Startable(Protocol):
    """A role that runs on threads of the process that starts it."""

    def start(self) -> None:
        """Start serving (raise when it cannot)."""

    def stop(self) -> None:
        """Stop gracefully."""


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
    """Give every process of this service instance one metrics directory (inherited by env).

    prometheus_client's multiprocess mode sums the files its processes write
    there. Without ``PROMETHEUS_MULTIPROC_DIR``, a new directory for this
    launcher; with it, that one as it is: it may be shared with the other
    processes of the instance (a pod's containers), which write there already.
    """
    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    default = Path(tempfile.gettempdir()) / f"{name}-metrics-{os.getpid()}"
    path = Path(given) if given else default
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    return path


def web_command(service: Service, config: "ServiceSettings") -> list[str]:
    """Return the command line of the service's ``web`` role (gunicorn)."""
    return gunicorn_command(
        name=service.name,
        bind=f"{config.BIND_HOST}:{config.HTTP_PORT}",
        workers=config.WEB_WORKERS,
        threads=config.WEB_THREADS,
        timeout=config.REQUEST_TIMEOUT_SECONDS,
        app=service.web_app,
    )


def roles_command(service: Service, roles: Sequence[str]) -> list[str]:
    """Return the command line of a child running ``roles`` (``web``, or the threaded ones)."""
    return [sys.executable, "-m", service.name, *roles]


def run_in_process(service: Service, roles: Sequence[str], supervisor: Supervisor) -> int:
    """Run roles other than ``web`` on threads of this process until asked to stop."""
    running: list[Startable] = []
    try:
        for role in roles:
            started = service.build_role(role)
            started.start()
            running.append(started)
    except Exception:
        log.exception("%s: a role could not start; stopping", service.name)
        for started in reversed(running):
            started.stop()
        return 1
    code = supervisor.wait()
    for started in reversed(running):
        started.stop()
    return code


def serve(service: Service, roles: Sequence[str], *, migrate_first: bool) -> int:
    """Run the roles (after the migrations, if asked) until a signal or a crash.

    A launcher that supervises children (the migrations, then gunicorn and
    the threaded roles) reads no settings itself: each child reads and checks
    them (a bad one ends it with the sentence and exit code 2), so the process
    that only waits on the others loads no pydantic and stays small.
    """
    threaded = [role for role in roles if role != WEB]
    if not migrate_first and not (threaded and WEB in roles):
        return serve_here(service, threaded)
    configure_logging(logging_variable("LOG_LEVEL", DEFAULT_LOG_LEVEL))
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
        if migration == 2:
            return 2  # a setting was refused; the child said which
        if migration != 0:
            log.error("%s: migrations failed (exit %s); not starting", service.name, migration)
            return 1
    # Only the migration connects as the database's owner: the serving roles and the worker
    # never see its URL (they serve as the role that can change no schema).
    role_env = serving_environment(service, os.environ)
    for group in ([WEB] if WEB in roles else [], threaded):
        if group:
            supervisor.start("+".join(group), roles_command(service, group), env=role_env)
    return supervisor.wait()


def owner_url_variables(service: Service) -> tuple[str, str]:
    """Return the variables that can give the owner's URL: its value, or its file's path.

    (Any setting may come from the file ``<VARIABLE>_FILE`` names: common.settings, which
    this module does not import, as it loads pydantic.)
    """
    return (service.migration_url_variable, f"{service.migration_url_variable}_FILE")


def serving_environment(service: Service, environment: Mapping[str, str]) -> dict[str, str]:
    """Return ``environment`` without the owner's URL (nor its file): for the serving roles."""
    hidden = owner_url_variables(service)
    return {name: value for name, value in environment.items() if name not in hidden}


def serve_here(service: Service, threaded: Sequence[str]) -> int:
    """Run the ``web`` role (becoming gunicorn) or the threaded roles in this process."""
    config = service.settings_class()
    configure_logging(config.LOG_LEVEL)
    # Said once, by the process that serves.
    for warning in [*config.security_warnings(), *config.startup_warnings()]:
        log.warning("%s: %s", service.name, warning)
    prepare_metrics_dir(service.name)
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
    for variable in owner_url_variables(service):
        os.environ.pop(variable, None)
    if threaded:
        supervisor = Supervisor(service.name)
        supervisor.install_signal_handlers()
        return run_in_process(service, threaded, supervisor)
    # Gunicorn reads WEB_CONCURRENCY itself, and refuses a blank one (compose passes
    # unset settings as blank): the launcher gives it --workers anyway.
    if not os.environ.get("WEB_CONCURRENCY", "x").strip():
        del os.environ["WEB_CONCURRENCY"]
    # Nothing to supervise beside it: become gunicorn, which handles signals itself.
    command = web_command(service, config)
    os.execve(command[0], command, dict(os.environ))


def probed_parts(service: Service) -> list[str]:
    """Return what ``healthcheck`` can probe of the service (``grpc`` only if it serves gRPC)."""
    return [part for part in healthcheck.PARTS if part != "grpc" or "grpc" in service.role_names]


def usage(service: Service) -> str:
    """Return the command line's usage line."""
    roles = " | ".join(service.role_names)
    parts = " ".join(f"[{part}]" for part in probed_parts(service))
    return f"usage: python -m {service.name} [migrate | ROLE... ({roles}) | healthcheck {parts}]"


def main(service: Service, args: Sequence[str]) -> int:
    """Command line of ``python -m <service>`` (see the module docstring)."""
    args = list(args)
    try:
        if args == ["migrate"]:
            if os.environ.get(MULTIPROC_DIR_VARIABLE):
                # The app's metrics write their files there as soon as they are defined, and a
                # migration's container (a pod's init container) starts with an empty /tmp.
                prepare_metrics_dir(service.name)
            return service.migrate()
        if args[:1] == ["healthcheck"] and set(args[1:]) <= set(probed_parts(service)):
            halves = [part for part in healthcheck.HALVES if part in service.role_names]
            parts = args[1:] or halves
            return healthcheck.check(service.name, service.settings_class(), parts)
        if not args:
            return serve(service, service.role_names, migrate_first=True)
        if set(args) <= set(service.role_names):
            return serve(service, args, migrate_first=False)
    except ConfigError as error:
        print(f"{service.name}: {error}", file=sys.stderr)
        return 2
    print(usage(service), file=sys.stderr)
    return 2


def run(service: Service) -> None:
    """Run ``python -m <service>`` with this process's arguments, and exit with its code."""
    sys.exit(main(service, sys.argv[1:]))
