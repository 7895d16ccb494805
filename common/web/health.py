"""Liveness (``GET /ping``) and readiness (``GET /health``) for both services: one set of rules.

``/ping`` is liveness (the web server answers). ``/health`` is readiness, for
a load balancer or an orchestrator deciding whether to send traffic here:

- the database must answer (within ``STATEMENT_TIMEOUT_MS``), else 503: a
  service without its database can serve nothing;
- the peer service's gRPC health service is asked with a short deadline and
  reported, but a peer that is down only makes the answer ``degraded`` (200):
  this service still serves most of its API (the User Manager queues the
  calls it owes; the Data Collector answers 503 only to ``POST /interests``),
  and taking it out of rotation would turn one outage into two;
- the service adds its own facts (the outbox backlog; OpenSky credits and the
  last collection cycle), read in the same short transaction.

Only callers with the ``ops`` scope see the detail; others get the status.
"""

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from common.web.auth import current_caller

if TYPE_CHECKING:
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


def readiness(
    *,
    service: str,
    db: SQLAlchemy,
    peer: "Peer | None",
    peer_service: str | None,
    facts_key: str,
    facts: Callable[[], Any],
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Return the ``/health`` body, status code and headers of ``service``.

    ``facts`` runs inside the check's transaction and returns what goes
    under ``facts_key`` (``None`` when the database is down). A service that
    calls no peer (``peer`` None) reports none.
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
    peer_status = "ok"
    if peer is not None:
        peer_status = "ok" if peer.is_serving(timeout=PEER_TIMEOUT_SECONDS) else "unavailable"
        body["peer"] = {"service": peer_service, "address": peer.address, "status": peer_status}
    body[facts_key] = found
    if database != "ok":
        body["status"] = "unavailable"
        body["error"] = "The database is unavailable."
        return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if peer_status != "ok":
        body["status"] = "degraded"
    return body, 200, {}


def probes(service: "Service", db: SQLAlchemy) -> Blueprint:
    """Return the blueprint of ``GET /ping`` and ``GET /health`` for a declared service."""
    blueprint = Blueprint("probes", __name__)
    peer = service.peer
    facts = service.part("services", "health_facts") if service.health else lambda: None

    @blueprint.get("/ping")
    def ping():
        """Answer liveness probes."""
        return {"message": "pong"}

    @blueprint.get("/health")
    def health():
        """Report readiness: the database, the peer service, the service's own facts."""
        body, status, headers = readiness(
            service=service.name,
            db=db,
            peer=current_app.extensions[peer] if peer else None,
            peer_service=peer,
            facts_key=service.health or "facts",
            facts=facts,
        )
        if not current_caller().has("ops"):
            # Internal addresses and the service's facts are for operators only.
            body = {"status": body["status"]}
        return body, status, headers

    return blueprint
