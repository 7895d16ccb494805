"""The request id that ties together the log lines of one request across both services.

It is taken from the client's ``X-Request-ID`` header when that is a sane
token, generated otherwise, returned in the response, sent to the peer as
gRPC metadata, and attached to every log record emitted while the request
(or the gRPC call it caused) is being handled.
"""

import contextvars
import re
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
GRPC_METADATA_KEY = "x-request-id"
# Long enough for any tracing scheme's ids; restricted so it is safe in logs and headers.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def accept_or_generate(candidate: str | None) -> str:
    """Return the client's id when well-formed, else a fresh one (never reject a request for it)."""
    if candidate and REQUEST_ID_PATTERN.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """Return the id of the request being handled in this context, if any."""
    return _current.get()


def bind_request_id(request_id: str | None) -> contextvars.Token:
    """Make ``request_id`` current; pass the returned token to :func:`unbind_request_id`."""
    return _current.set(request_id)


def unbind_request_id(token: contextvars.Token) -> None:
    """Restore the request id that was current before :func:`bind_request_id`."""
    _current.reset(token)
