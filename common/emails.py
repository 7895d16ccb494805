"""Email addresses, the identity of a user in both services: one rule for what is valid."""

from email_validator import EmailNotValidError, validate_email

EMAIL_MAX_LENGTH = 254


def normalize_email(value: str) -> str:
    """Return the canonical form of an email address, or raise ``ValueError`` saying why.

    Syntax is checked by email-validator (no DNS lookups: a request must not
    wait on the network). The whole address is lower-cased, so
    ``Mario.Rossi@X.com`` and ``mario.rossi@x.com`` are one user.
    """
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    normalized = result.normalized.lower()
    if len(normalized) > EMAIL_MAX_LENGTH:
        # Normalization can lengthen an address (NFC, lower-casing some letters).
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    return normalized
