"""Logging set-up shared by every process: UTC timestamps, request ids, text or JSON.

``LOG_FORMAT=json`` switches every process to one JSON object per line (for
log shippers); the default is one readable text line per event. Each record
carries the current request id (``-`` outside a request). Nothing here logs
request bodies, which is how IBANs, tax codes and secrets stay out of logs.
"""

import logging
import sys
import time

from common.config import env_str
from common.request_context import current_request_id

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s"
    " [request_id=%(request_id)s]"
)
JSON_FIELDS = "{asctime}{levelname}{name}{process}{message}{request_id}"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RequestIdFilter(logging.Filter):
    """Attach the current request id to every record, so formatters can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.request_id`` unless the caller already set one."""
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def build_formatter(log_format: str | None = None) -> logging.Formatter:
    """Return the formatter for ``log_format`` (default: the ``LOG_FORMAT`` variable, else text)."""
    log_format = (log_format or env_str("LOG_FORMAT", "text")).lower()
    if log_format == "json":
        # Imported only when asked for: every process would otherwise carry it.
        from pythonjsonlogger.json import JsonFormatter

        formatter: logging.Formatter = JsonFormatter(
            JSON_FIELDS,
            style="{",
            datefmt=DATE_FORMAT,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter(TEXT_FORMAT, datefmt=DATE_FORMAT)
    formatter.converter = time.gmtime
    return formatter


def configure_logging(level: str = "INFO", log_format: str | None = None) -> None:
    """Send log records to stderr in the configured format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
