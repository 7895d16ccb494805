"""A service in one declaration: the skeleton builds its app and runs its processes.

A service is a package of its own code plus one :class:`Service` in its
``app.py``. Everything else is written once, here and in the modules this
one calls: the Flask app (:meth:`Service.create_app`, built by
:mod:`common.web.factory`), the process entry point and its roles
(``python -m <service>``: :mod:`common.process.launcher`), the gRPC server
(:mod:`common.rpc.server`), the scheduler of background jobs
(:mod:`common.process.scheduling`), the migrations' Alembic environment
(:mod:`common.db.migrations`), liveness and readiness (:mod:`common.web.health`),
metrics and the API document; the container image runs any service.

The package's files are where the skeleton finds its parts:

=================  =============================================================
``config.py``      ``Settings``: its settings class
``models.py``      ``db``: its Flask-SQLAlchemy instance, and its tables
``__init__.py``    its docstring: ``Name: summary.``, then the API's overview
``routes.py``      ``bp``: its REST routes; ``TAGS``: what its views' tags mean
``services.py``    ``health_facts()``: what ``/health`` adds (when ``health`` names
                   its key); ``health_checks()``: what else it depends on (``checks``)
``grpc_server.py`` the servicer class the declaration names (role ``grpc``)
``worker.py``      ``jobs(app)``: its periodic jobs; ``subscriptions(app)``: the
                   broker subjects it consumes (role ``worker``)
``models.py``      ``OUTBOX``: its broker outbox table, when it publishes
``metrics.py``     ``SCRAPE_COLLECTORS``: collectors computed at each scrape
``answers.py``     ``HealthFacts``: the model of what ``health_facts()`` returns;
                   ``HEALTH_CHECKS``: the model of each check's answer, by name
``migrations/``    ``versions/``: its Alembic revisions
=================  =============================================================

Parts are imported only when a process needs them: the launcher reads the
declaration in a process that only supervises and must not load Flask,
SQLAlchemy or grpcio, and each role imports only what it runs.
"""

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEB = "web"
GRPC = "grpc"
WORKER = "worker"
MIGRATE = "migrate"


@dataclass(frozen=True)
class Service:
    """One service: its package, and which of the optional parts it has.

    ``servicer``: the class in ``grpc_server.py`` that serves its gRPC API
    (role ``grpc``); ``jobs``: it has periodic jobs in ``worker.py``;
    ``consumes``: it consumes broker subjects (``worker.py``); ``publishes``:
    it publishes to the broker through its outbox (``models.py``'s ``OUTBOX``),
    which the worker relays; ``peer``: the service whose gRPC API it calls (its client:
    :data:`common.rpc.peers.CLIENTS`; its address: the ``<PEER>_GRPC_ADDR``
    setting), whose health ``/health`` reports; ``health``: the key under
    which ``/health`` shows what ``services.health_facts()`` returns;
    ``checks``: it depends on more than its database, peer and broker
    (``services.health_checks()`` returns a check of each, by name, which
    ``/health`` runs like the peer's: one not ``ok`` makes it ``degraded``).
    """

    name: str
    servicer: str | None = None
    jobs: bool = False
    consumes: bool = False
    publishes: bool = False
    peer: str | None = None
    health: str | None = None
    checks: bool = False

    def part(self, module: str, attribute: str, *default: Any) -> Any:
        """Import ``<service>.<module>`` and return its ``attribute`` (or ``default``)."""
        return getattr(importlib.import_module(f"{self.name}.{module}"), attribute, *default)

    @property
    def overview(self) -> str:
        """The package's docstring: what the service is, first in its API document."""
        return importlib.import_module(self.name).__doc__

    @property
    def role_names(self) -> list[str]:
        """Every role this service runs, in the order they start."""
        optional = {GRPC: self.servicer, WORKER: self.jobs or self.consumes or self.publishes}
        return [WEB, *(role for role, present in optional.items() if present)]

    @property
    def migration_url_variable(self) -> str:
        """The variable of the owner role's URL, which only the migrations may see."""
        return f"{self.name.upper()}_MIGRATION_DATABASE_URL"

    @property
    def uses_broker(self) -> bool:
        """Tell whether the service talks to the broker (its processes then connect to it)."""
        return self.consumes or self.publishes

    @property
    def migrations_dir(self) -> Path:
        """Where the service's Alembic revisions are."""
        return Path(importlib.import_module(self.name).__file__).parent / "migrations" / "versions"

    @property
    def web_app(self) -> str:
        """The gunicorn application spec of the ``web`` role (``app.py``'s ``create_app``)."""
        return f"{self.name}.app:create_app()"

    @functools.cached_property
    def settings_class(self) -> type:
        """The service's settings class (imports ``config.py``, which loads nothing heavy)."""
        return self.part("config", "Settings")

    def create_app(self, test_config: dict | None = None, *, process: str = WEB):
        """Build the service's Flask app: its settings, then the test's overrides, then the rest.

        ``process`` is the role the app runs in: it sets the database
        connections' limits, and ``migrate`` alone connects as the owner role
        and loads Flask-Migrate (:func:`common.web.factory.build_app`).
        """
        from common.web.factory import build_app

        return build_app(self, test_config=test_config, process=process)

    def build_role(self, role: str):
        """Build the ``grpc`` or ``worker`` role on an app of its own (started by the launcher)."""
        app = self.create_app(process=role)
        if role == GRPC and self.servicer:
            from common.rpc.server import GrpcServer

            return GrpcServer(app, self.part("grpc_server", self.servicer))
        if role == WORKER and role in self.role_names:
            return Together(self._background(app))
        raise ValueError(f"{self.name} has no role {role!r}")

    def _background(self, app) -> list:
        """Return what the ``worker`` role runs: jobs, outbox relay, consumers."""
        parts = []
        if self.jobs:
            from common.process.scheduling import Jobs

            parts.append(Jobs(app, self.part("worker", "jobs")(app)))
        if self.publishes:
            from common.broker.outbox import Relay

            db, table = self.part("models", "db"), self.part("models", "OUTBOX")
            parts.append(Relay(app, db, table, app.extensions["broker"]))
        if self.consumes:
            from common.broker.consumer import Consumer

            subscriptions = self.part("worker", "subscriptions")(app)
            parts.append(Consumer(app, app.extensions["broker"], subscriptions))
        return parts

    def migrate(self) -> int:
        """Apply the service's migrations as the owner role, waiting for its database."""
        from common.db.migrations import migrate_app

        migrate_app(self.create_app(process=MIGRATE))
        return 0


class Together:
    """Several roles' parts started in order and stopped in reverse, as one."""

    def __init__(self, parts: list):
        self.parts = parts

    def start(self) -> None:
        """Start every part (stopping those started if one cannot start)."""
        started = []
        try:
            for part in self.parts:
                part.start()
                started.append(part)
        except Exception:
            for part in reversed(started):
                part.stop()
            raise

    def stop(self) -> None:
        """Stop every part, the last started first."""
        for part in reversed(self.parts):
            part.stop()
