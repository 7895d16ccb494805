"""Logging set-up shared by every process: UTC timestamps, request ids, text or JSON.

``LOG_FORMAT=json`` switches every process to one JSON object per line (for
log shippers); the default is one readable text line per event. Each record
carries the current request id (``-`` outside a request). Nothing here logs
request bodies, which is how IBANs, tax codes and secrets stay out of logs;
and because PostgreSQL repeats a statement's values in some error messages
(``LINE 1: ... 'GB82WEST...'``, ``Key (tax_code)=(...)``), database exceptions
are logged by class, SQLSTATE and statement template only, never by message
(tests/integration/test_log_secrets.py checks every process's logs).
"""

import logging
import os
import sys
import time
import traceback

from common.observability.request_ids import current_request_id

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s"
    " [request_id=%(request_id)s]"
)
JSON_FIELDS = "{asctime}{levelname}{name}{process}{message}{request_id}"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# LOG_LEVEL and LOG_FORMAT when unset (the services' settings declare both with these).
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_LOG_FORMAT = "text"
# Libraries that say at INFO what nobody running the services needs: alembic lists its
# plugins once per process (dozens of lines per start of the stack).
QUIET_LOGGERS = {"alembic.runtime.plugins": "WARNING"}


class RequestIdFilter(logging.Filter):
    """Attach the current request id to every record, so formatters can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.request_id`` unless the caller already set one."""
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def describe_database_error(error: BaseException) -> str | None:
    """Describe a database exception without any value it may quote; None for other errors."""
    from sqlalchemy.exc import DBAPIError

    original = error.orig if isinstance(error, DBAPIError) else error
    if not type(original).__module__.startswith("psycopg2"):
        return None
    statement = error.statement if isinstance(error, DBAPIError) else None
    description = f"{type(original).__name__} (SQLSTATE {getattr(original, 'pgcode', None)})"
    if statement:
        # The template, with %(name)s placeholders: values are bound separately.
        description += f" in: {' '.join(statement.split())[:300]}"
    return description


class _RedactDatabaseErrors:
    """Mixin for formatters: a database exception's traceback ends with its description only."""

    def formatException(self, exc_info) -> str:  # noqa: N802 - logging's method name
        """Format the traceback, replacing a database error's message (values) by its kind."""
        _type, error, tb = exc_info
        description = describe_database_error(error) if error is not None else None
        if description is None:
            return super().formatException(exc_info)
        frames = "".join(traceback.format_tb(tb))
        return f"Traceback (most recent call last):\n{frames}{type(error).__name__}: {description}"


class TextFormatter(_RedactDatabaseErrors, logging.Formatter):
    """One readable line per event (plus a redacted traceback when there is one)."""


def _json_line_formatter(**options) -> logging.Formatter:
    """Return a formatter writing one JSON object per event (redacted like the text one).

    python-json-logger is imported only when JSON is asked for, so that the
    processes of a stack logging text do not carry it.
    """
    from pythonjsonlogger.json import JsonFormatter

    class JsonLineFormatter(_RedactDatabaseErrors, JsonFormatter):
        pass

    return JsonLineFormatter(**options)


def logging_variable(name: str, default: str) -> str:
    """Return ``LOG_LEVEL`` or ``LOG_FORMAT`` as the environment gives it (unset or blank: default).

    Read here, not through the service's settings, because gunicorn's master
    loads this module and nothing else of its service: pydantic-settings would
    add about 13 MB to it. The launcher has read both through the service's
    settings before it starts gunicorn.
    """
    return os.environ.get(name, "").strip() or default


def build_formatter(log_format: str | None = None) -> logging.Formatter:
    """Return the formatter for ``log_format`` (default: the ``LOG_FORMAT`` variable, else text)."""
    log_format = (log_format or logging_variable("LOG_FORMAT", DEFAULT_LOG_FORMAT)).lower()
    if log_format == "json":
        formatter = _json_line_formatter(
            fmt=JSON_FIELDS,
            style="{",
            datefmt=DATE_FORMAT,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = TextFormatter(TEXT_FORMAT, datefmt=DATE_FORMAT)
    formatter.converter = time.gmtime
    return formatter


def configure_logging(level: str = "INFO", log_format: str | None = None) -> None:
    """Send log records to stderr in the configured format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # The launcher logs before any settings are checked: an unknown level is its child's to
    # refuse, in a sentence, and logging goes on at INFO meanwhile.
    known = isinstance(logging.getLevelName(level.upper()), int)
    root.setLevel(level.upper() if known else "INFO")
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet_level)
