"""What the User Manager answers, as the API document shows it.

The answers are built as dicts (:func:`user_manager.models.user_to_dict`)
or as JSON in PostgreSQL (the list of users); these models describe their
shape for the document and the fuzzing that checks it, without being in
the way of a request.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.web.openapi import Answer
from user_manager.idempotency import REPLAY_HEADER
from user_manager.inputs import EXAMPLE_USER


class User(Answer):
    """A user as the API shows it (the tax code and IBAN masked without `users:pii`)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**EXAMPLE_USER, "created_at": "2026-01-31T12:00:00Z"}]}
    )

    email: str = Field(description="Lower-cased; the user's id.")
    first_name: str
    last_name: str
    tax_code: str | None = Field(description="Upper-case letters and digits.")
    iban: str | None = Field(description="Compact, upper-case.")
    created_at: datetime


class UserCreated(Answer):
    """The answer to a new user."""

    message: str
    user: User | None = Field(
        description="The user created; null when a replay comes after the user was deleted "
        "(a deletion keeps nothing of the user, not even in stored answers)."
    )


class OutboxFacts(Answer):
    """Calls to the Data Collector committed but not yet delivered."""

    backlog: int = Field(ge=0)
    oldest_pending_seconds: float | None = Field(ge=0)


class ReplayHeader(BaseModel):
    """The header of an answer given again for a repeated Idempotency-Key."""

    replayed: Literal["true"] = Field(
        None,
        alias=REPLAY_HEADER,
        description="`true` when this is the stored answer of an earlier request with the "
        "same Idempotency-Key (nothing was done again).",
    )


class ConflictHeaders(ReplayHeader):
    """The headers of a 409 to ``POST /users``."""

    retry_after: str = Field(
        None,
        alias="Retry-After",
        pattern="^[0-9]+$",
        description="Only while an earlier user with this email is still being deleted: "
        "seconds to wait before retrying.",
    )


# What /health shows under the service's key (common.web.health finds it by this name).
HealthFacts = OutboxFacts
