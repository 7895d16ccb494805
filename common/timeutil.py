"""UTC time helpers: every timestamp the services store or return is UTC."""

from datetime import UTC, datetime

from sqlalchemy import case, extract, func, literal_column


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat_utc(moment: datetime | None) -> str | None:
    """Format an aware datetime as ISO 8601 in UTC with a ``Z`` suffix."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def isoformat_utc_sql(column):
    """Return SQL that formats a timestamptz column as :func:`isoformat_utc` does."""
    utc = func.timezone("UTC", column)
    fraction = case(
        (extract("microseconds", column) % 1_000_000 == 0, literal_column("''")),
        else_=func.to_char(utc, literal_column("'.US'")),
    )
    whole = func.to_char(utc, literal_column("""'YYYY-MM-DD"T"HH24:MI:SS'"""))
    return func.concat(whole, fraction, literal_column("'Z'"))
