"""UTC time helpers: every timestamp the services store or return is UTC."""

from datetime import UTC, datetime

from sqlalchemy import case, func, literal_column


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat_utc(moment: datetime | None) -> str | None:
    """Format an aware datetime as ISO 8601 in UTC with a ``Z`` suffix."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def isoformat_utc_sql(column):
    """Return SQL that formats a timestamptz column as :func:`isoformat_utc` does.

    One ``to_char`` per value, its pattern chosen by whether the value has a
    fraction of a second: a page of flights formats two times per row, and
    this costs PostgreSQL half what gluing a fraction onto the whole seconds did.
    """
    utc = func.timezone("UTC", column)
    whole = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS"Z"'""")
    fractional = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'""")
    return case(
        (func.date_trunc("second", column) == column, func.to_char(utc, whole)),
        else_=func.to_char(utc, fractional),
    )
