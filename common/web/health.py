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
from typing import Any

from flask import Blueprint, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from common.rpc.peers import Peer
from common.web.auth import api_keys_health, current_caller

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
    peer: Peer,
    peer_service: str,
    facts_key: str,
    facts: Callable[[], Any],
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Return the ``/health`` body, status code and headers of ``service``.

    ``facts`` runs inside the check's transaction and returns what goes
    under ``facts_key`` (``None`` when the database is down).
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
    peer_status = "ok" if peer.is_serving(timeout=PEER_TIMEOUT_SECONDS) else "unavailable"
    api_keys = api_keys_health(current_app)
    body: dict[str, Any] = {
        "status": "ok",
        "service": service,
        "database": database,
        "peer": {"service": peer_service, "address": peer.address, "status": peer_status},
        facts_key: found,
        "api_keys": api_keys,
    }
    if database != "ok":
        body["status"] = "unavailable"
        body["error"] = "The database is unavailable."
        return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if peer_status != "ok" or (api_keys is not None and api_keys["status"] != "ok"):
        body["status"] = "degraded"
    return body, 200, {}


def add_probes(
    blueprint: Blueprint,
    *,
    service: str,
    db: SQLAlchemy,
    peer: Callable[[], Peer],
    peer_service: str,
    facts_key: str,
    facts: Callable[[], Any],
) -> None:
    """Add ``GET /ping`` and ``GET /health`` to a service's blueprint (``peer()``: its client)."""

    @blueprint.get("/ping")
    def ping():
        """Answer liveness probes."""
        return {"message": "pong"}

    @blueprint.get("/health")
    def health():
        """Report readiness: the database, the peer service, the service's own facts."""
        body, status, headers = readiness(
            service=service,
            db=db,
            peer=peer(),
            peer_service=peer_service,
            facts_key=facts_key,
            facts=facts,
        )
        if not current_caller().has("ops"):
            # Internal addresses and the service's facts are for operators only.
            body = {"status": body["status"]}
        return body, status, headers
