"""Logging set-up shared by every process: UTC timestamps, one line per event."""

import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr with ISO-8601 UTC timestamps (idempotent)."""
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
