"""What clients may send the User Manager: the body of ``POST /users``, field by field.

Each field is normalized here (emails lower-cased, tax codes and IBANs
compacted and upper-cased), so a stored user and a request's fingerprint
only ever see the canonical form. The descriptions are the API document's;
the path and header models below only document what the routes read.
"""

import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from common.emails import EMAIL_MAX_LENGTH, normalize_email
from user_manager.models import IBAN_MAX_LENGTH, NAME_MAX_LENGTH, TAX_CODE_MAX_LENGTH

# Tax identifiers are printed with spaces, dots, hyphens or slashes between groups.
TAX_CODE_SEPARATORS = re.compile(r"[\s./-]")
# Shorter national codes exist only for companies in a few registries; four is a safe floor.
TAX_CODE_MIN_LENGTH = 4
ASCII_ALNUM = re.compile(r"^[A-Za-z0-9]*$")
EXAMPLE_USER = {
    "email": "mario.rossi@example.com",
    "first_name": "Mario",
    "last_name": "Rossi",
    "tax_code": "RSSMRA85T10A562S",
    "iban": "IT60X0542811101000000123456",
}


def _is_invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf"


def _check_name(value: str) -> str:
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise ValueError("must not contain control characters")
    if all(_is_invisible(char) for char in value):
        raise ValueError("must not be blank")
    return value


class UserCreate(BaseModel):
    """The body of ``POST /users``: unknown fields and non-string values are refused."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [EXAMPLE_USER]}
    )

    email: StrictStr = Field(
        description=f"Any deliverable-looking address, at most {EMAIL_MAX_LENGTH} characters; "
        "stored lower-cased (emails are case-insensitive here)."
    )
    first_name: StrictStr = Field(
        max_length=NAME_MAX_LENGTH, description=f"1-{NAME_MAX_LENGTH} characters, not blank."
    )
    last_name: StrictStr = Field(
        max_length=NAME_MAX_LENGTH, description=f"1-{NAME_MAX_LENGTH} characters, not blank."
    )
    tax_code: StrictStr | None = Field(
        None,
        description=f"Optional; {TAX_CODE_MIN_LENGTH}-{TAX_CODE_MAX_LENGTH} letters and digits "
        "(spaces . - / allowed between groups); unique among users.",
    )
    iban: StrictStr | None = Field(
        None,
        description="Optional; a valid IBAN (country, length, format and check digits), at "
        f"most {IBAN_MAX_LENGTH} characters without spaces.",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("tax_code")
    @classmethod
    def _tax_code(cls, value: str | None) -> str | None:
        """Normalize to upper-case letters and digits; no single country's checksum is imposed."""
        if value is None or value == "":
            return None
        normalized = TAX_CODE_SEPARATORS.sub("", value)
        if not ASCII_ALNUM.fullmatch(normalized):
            raise ValueError("must contain only letters A-Z and digits (spaces, . - / allowed)")
        if not TAX_CODE_MIN_LENGTH <= len(normalized) <= TAX_CODE_MAX_LENGTH:
            raise ValueError(
                f"must have {TAX_CODE_MIN_LENGTH} to {TAX_CODE_MAX_LENGTH} letters and digits"
            )
        return normalized.upper()

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        """Normalize to the compact upper-case form, checked against the IBAN registry."""
        if value is None or value == "":
            return None
        compact = re.sub(r"\s", "", value)
        if not ASCII_ALNUM.fullmatch(compact) or not 5 <= len(compact) <= IBAN_MAX_LENGTH:
            raise ValueError(f"must be 5 to {IBAN_MAX_LENGTH} letters and digits (spaces allowed)")
        # Imported on first use: the gRPC server and the worker never validate an IBAN,
        # and schwifty loads its whole registry of banks.
        from schwifty import IBAN
        from schwifty.exceptions import SchwiftyException

        try:
            # Country code, length and BBAN format for that country, ISO 13616 mod-97.
            return IBAN(compact).compact
        except SchwiftyException as error:
            raise ValueError(f"is not a valid IBAN: {error}") from None


class UserPath(BaseModel):
    """The user a path names (read by ``common.web.inputs.path_email``)."""

    email: str = Field(
        min_length=1,
        description="The user's email (any case).",
        examples=["mario.rossi@example.com"],
    )


class IdempotencyKeyHeader(BaseModel):
    """The header that makes a write at-most-once (read by ``idempotency.require_key``)."""

    key: str = Field(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern="^[!-~]+$",
        description="Makes the request at-most-once: a unique value per intended operation "
        "(a UUID), sent again unchanged on a retry.",
        examples=["3f9d2e1b-8c4a-4d6f-b1e2-5a7f8c2d9e4a"],
    )
