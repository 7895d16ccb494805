"""UTC time helpers: every timestamp the services store or return is UTC.

Two representations meet here. The database stores aware datetimes and
dates; computations over time (collection's planning, the averages of the
flight queries) use Unix seconds and UTC day numbers (``seconds // DAY``),
as OpenSky counts its partitions. The conversions between the two are the
functions below and nowhere else.
"""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import case, func, literal_column

# Seconds in a UTC day: Unix time has no leap seconds, so day ``n`` is [n * DAY, (n + 1) * DAY).
DAY = 86400
EPOCH = date(1970, 1, 1)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def moment(seconds: float) -> datetime:
    """Return Unix seconds as an aware UTC datetime (the database stores those)."""
    return datetime.fromtimestamp(seconds, UTC)


def unix_seconds(value: datetime) -> float:
    """Return an aware datetime as Unix seconds (the inverse of :func:`moment`)."""
    return value.timestamp()


def day_number(value: date) -> int:
    """Return the UTC day number of a date (the database stores dates)."""
    return (value - EPOCH).days


def day_date(day: int) -> date:
    """Return the date of a UTC day number."""
    return EPOCH + timedelta(days=day)


def day_start(day: int) -> int:
    """First second of UTC day ``day``."""
    return day * DAY


def day_end(day: int) -> int:
    """Last second of UTC day ``day`` (intervals are inclusive at both ends, as OpenSky's)."""
    return day * DAY + DAY - 1


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
