"""Liveness (``GET /ping``) and readiness (``GET /health``) for every service: one set of rules.

``/ping`` is liveness (the web server answers). ``/health`` is readiness, for
a load balancer or an orchestrator deciding whether to send traffic here:

- the database must answer (within ``STATEMENT_TIMEOUT_MS``), else 503: a
  service without its database can serve nothing;
- the peer service's gRPC health service (and the broker, for the services
  that use one) is asked with a short deadline and reported, but a peer
  that is down only makes the answer ``degraded`` (200):
  this service still serves most of its API (the User Manager queues the
  calls it owes; the Data Collector answers 503 only to ``POST /interests``),
  and taking it out of rotation would turn one outage into two;
- the service adds its own facts (the outbox backlog; OpenSky credits and the
  last collection cycle), read in the same short transaction;
- ``api_keys``: the state of ``API_KEYS_FILE`` (null without one). A file that
  cannot be read accepts no key, which makes the answer ``degraded``: bearer
  tokens still work, and every replica shares the file, so taking this one
  out of rotation would help nobody.

Only callers with the ``ops`` scope see the detail; others get the status.
"""

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from flask import Blueprint, current_app
from flask_sqlalchemy import SQLAlchemy
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from common.web.auth import api_keys_health, current_caller
from common.web.openapi import OPERATIONS_TAG, Answer, Message, Reply, documented

if TYPE_CHECKING:
    from common.broker.connection import Broker
    from common.rpc.peers import Peer
    from common.service import Service

log = logging.getLogger(__name__)

HEALTH_STATUSES = ("ok", "degraded", "unavailable")
PEER_STATUSES = ("ok", "unavailable")
# A readiness probe must answer within its own timeout even when PostgreSQL hangs.
STATEMENT_TIMEOUT_MS = 2000
# The peer is on the same network: a healthy one answers in milliseconds. Short, so a
# probe of this service never waits long on the other one.
PEER_TIMEOUT_SECONDS = 0.5
RETRY_AFTER_SECONDS = 5


class PeerHealth(Answer):
    """The other service's gRPC health service, asked with a short deadline."""

    service: str
    address: str
    status: Literal[PEER_STATUSES]


class BrokerHealth(Answer):
    """The broker, asked with a short deadline."""

    address: str
    status: Literal[PEER_STATUSES]


class ApiKeysHealth(Answer):
    """The state of ``API_KEYS_FILE``: ``unavailable`` when unreadable (no key is accepted)."""

    status: Literal["ok", "unavailable"]
    keys: int | None = Field(None, ge=0)
    error: str | None = None


def health_answer(service: "Service") -> type[BaseModel]:
    """Return the model of the service's ``/health`` answer (its facts: ``answers.HealthFacts``)."""
    shown = {"peer": (PeerHealth, None)} if service.peer else {}
    if service.uses_broker:
        shown["broker"] = (BrokerHealth, None)
    if service.checks:
        shown.update(
            {
                name: (model, None)
                for name, model in service.part("answers", "HEALTH_CHECKS").items()
            }
        )
    facts = service.part("answers", "HealthFacts") | None if service.health else None
    return create_model(
        "Health",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Readiness of the service. `status` is `ok` when the database and what the "
        "service depends on answer, `degraded` when only a dependency does not (the service "
        "still serves, and says so), `unavailable` when the database does not. The rest is "
        "shown to callers with the `ops` scope only (and to everyone with auth off).",
        status=(Literal[HEALTH_STATUSES], ...),
        service=(Literal[service.name], None),
        database=(Literal["ok", "unavailable"], None),
        error=(str, None),
        **shown,
        api_keys=(ApiKeysHealth | None, Field(None, description="Null without a keys file.")),
        **{service.health or "facts": (facts, None)},
    )


def readiness(
    *,
    service: str,
    db: SQLAlchemy,
    dependencies: dict[str, Callable[[], dict[str, Any]]],
    facts_key: str,
    facts: Callable[[], Any],
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Return the ``/health`` body, status code and headers of ``service``.

    ``dependencies`` are what the service uses besides its database (the
    peer service, the broker): each check returns what ``/health`` shows
    under its name, with a ``status`` of ``ok`` or ``unavailable``. ``facts``
    runs inside the database check's transaction and returns what goes under
    ``facts_key`` (``None`` when the database is down).
    """
    try:
        db.session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        found = facts()
        db.session.rollback()
        database = "ok"
    except SQLAlchemyError as error:
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        log.warning("health: the database is unavailable: %s", error)
        found, database = None, "unavailable"
    body: dict[str, Any] = {"status": "ok", "service": service, "database": database}
    for name, check in dependencies.items():
        body[name] = check()
    body[facts_key] = found
    body["api_keys"] = api_keys = api_keys_health(current_app)
    if database != "ok":
        body["status"] = "unavailable"
        body["error"] = "The database is unavailable."
        return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    unusable_keys = api_keys is not None and api_keys["status"] != "ok"
    if unusable_keys or any(body[name]["status"] != "ok" for name in dependencies):
        body["status"] = "degraded"
    return body, 200, {}


def peer_check(service: str, peer: "Peer") -> Callable[[], dict[str, Any]]:
    """Return the check of the peer service's gRPC health service, asked with a short deadline."""

    def check() -> dict[str, Any]:
        serving = peer.is_serving(timeout=PEER_TIMEOUT_SECONDS)
        return {"service": service, "address": peer.address, "status": _status(serving)}

    return check


def broker_check(broker: "Broker") -> Callable[[], dict[str, Any]]:
    """Return the check of the broker: it answers within its timeout."""

    def check() -> dict[str, Any]:
        up = broker.is_connected(timeout=PEER_TIMEOUT_SECONDS)
        return {"address": broker.shown_url, "status": _status(up)}

    return check


def _status(up: bool) -> str:
    return "ok" if up else "unavailable"


def probes(service: "Service", db: SQLAlchemy) -> Blueprint:
    """Return the blueprint of ``GET /ping`` and ``GET /health`` for a declared service."""
    blueprint = Blueprint("probes", __name__)
    facts = service.part("services", "health_facts") if service.health else lambda: None
    answer = health_answer(service)

    @blueprint.get("/ping")
    @documented(
        tag=OPERATIONS_TAG, answers={200: Reply("Alive.", Message, example={"message": "pong"})}
    )
    def ping():
        """Answer liveness probes: the web server answers.

        Touches nothing behind the web server; use `/health` for readiness.
        """
        return {"message": "pong"}

    @blueprint.get("/health")
    @documented(
        tag=OPERATIONS_TAG,
        answers={
            200: Reply("Ready (`ok` or `degraded`).", answer),
            503: Reply("Not ready: the database does not answer.", answer),
        },
    )
    def health():
        """Report readiness: the database, the services it depends on, its own facts."""
        dependencies = {}
        if service.peer:
            dependencies["peer"] = peer_check(service.peer, current_app.extensions[service.peer])
        if service.uses_broker:
            dependencies["broker"] = broker_check(current_app.extensions["broker"])
        if service.checks:
            dependencies.update(service.part("services", "health_checks")())
        body, status, headers = readiness(
            service=service.name,
            db=db,
            dependencies=dependencies,
            facts_key=service.health or "facts",
            facts=facts,
        )
        if not current_caller().has("ops"):
            # Internal addresses and the service's facts are for operators only.
            body = {"status": body["status"]}
        return body, status, headers

    return blueprint
