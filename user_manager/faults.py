"""Test-only fault points: let the integration suite crash a worker at a chosen moment.

Off unless ``FAULT_INJECTION_ENABLED=1`` (the test suite's stack sets it;
production must not, since any client could then kill workers). When on, a
request carrying ``X-Fault-Inject: <point>`` kills its own worker process with
SIGKILL when it reaches that point: no cleanup, no rollback sent, exactly
like a power cut or the OOM killer. Gunicorn then starts a new worker. A
pause point instead holds the request (and its open transaction) a moment.
"""

import logging
import os
import signal
import time

from flask import current_app, has_request_context, request

log = logging.getLogger(__name__)

HEADER = "X-Fault-Inject"
# Long enough for a test to send a second request into the window a pause holds open.
PAUSE_SECONDS = 2.0


def _asked_for(name: str) -> bool:
    if not current_app.config.get("FAULT_INJECTION_ENABLED") or not has_request_context():
        return False
    return request.headers.get(HEADER) == name


def requested() -> bool:
    """Return whether fault injection is on and this request asks for a fault point."""
    return (
        bool(current_app.config.get("FAULT_INJECTION_ENABLED"))
        and has_request_context()
        and HEADER in request.headers
    )


def crash_point(name: str) -> None:
    """Kill this process here if fault injection is on and the request asks for ``name``."""
    if _asked_for(name):
        log.warning("fault injection: %s, killing worker %d", name, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Wait here a moment if fault injection is on and the request asks for ``name``.

    The request's transaction stays open meanwhile: a test races another
    request against it.
    """
    if _asked_for(name):
        log.warning("fault injection: %s, pausing %.1fs", name, PAUSE_SECONDS)
        time.sleep(PAUSE_SECONDS)
