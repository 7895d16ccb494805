"""How much of a user's personal data an answer shows, and what is kept after deletion.

IBANs and tax codes are shown masked (``IT60…3456``: a few characters at
each end, still a string) wherever the caller has no need for them: in every
list item, and in a single user's answer to a caller without ``users:pii``.
After a user is deleted, the stored answers of their idempotency keys keep
nothing of them (``services.DELETE_USER`` clears them).
"""

from sqlalchemy import ColumnElement, case, func, literal

MASK = "…"
# At most this many characters stay visible at each end, and never more than a quarter
# of the value, so a short tax code shows one character at each end.
VISIBLE_AT_EACH_END = 4
PII_FIELDS = ("tax_code", "iban")


def mask(value: str | None) -> str | None:
    """Return ``value`` with its middle replaced by an ellipsis (None stays None)."""
    if value is None:
        return None
    visible = min(VISIBLE_AT_EACH_END, len(value) // 4)
    return value[:visible] + MASK + (value[-visible:] if visible else "")


def masked_sql(column: ColumnElement) -> ColumnElement:
    """Return SQL that masks ``column`` exactly as :func:`mask` does."""
    # Integer division, as in Python (a plain "/" would be made numeric by SQLAlchemy).
    visible = func.least(VISIBLE_AT_EACH_END, func.length(column).op("/")(4))
    return case(
        (column.is_(None), None),
        else_=func.concat(
            func.left(column, visible),
            literal(MASK),
            case((visible > 0, func.right(column, visible)), else_=literal("")),
        ),
    )


def masked_user(user: dict) -> dict:
    """Return a user's public JSON with its IBAN and tax code masked."""
    return {**user, **{field: mask(user[field]) for field in PII_FIELDS}}
