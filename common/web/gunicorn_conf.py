"""Gunicorn settings that cannot be given on the command line: logging and metrics hooks.

Loaded with ``--config python:common.web.gunicorn_conf`` by the launcher.
"""

import os

from common.observability import MULTIPROC_DIR_VARIABLE
from common.observability.logs import (
    DEFAULT_LOG_LEVEL,
    QUIET_LOGGERS,
    build_formatter,
    logging_variable,
)

# Gunicorn's own messages go through the same handler and format as the app's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"service": {"()": build_formatter}},
    "filters": {"request_id": {"()": "common.observability.logs.RequestIdFilter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "service",
            "filters": ["request_id"],
            "stream": "ext://sys.stderr",
        }
    },
    "root": {
        "level": logging_variable("LOG_LEVEL", DEFAULT_LOG_LEVEL).upper(),
        "handlers": ["stderr"],
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        # The app logs one line per request itself, with the request id.
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        **{name: {"level": level} for name, level in QUIET_LOGGERS.items()},
    },
}


def child_exit(_server, worker):
    """Drop a dead worker's live gauges from the aggregated metrics."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
