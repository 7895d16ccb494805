"""UTC time helpers: every timestamp the services store or return is UTC."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat_utc(moment: datetime | None) -> str | None:
    """Format an aware datetime as ISO 8601 in UTC with a ``Z`` suffix."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
