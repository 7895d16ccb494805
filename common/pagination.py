"""Keyset pagination shared by every list endpoint.

Lists stay plain JSON arrays (the seed's shape); the next page is announced
in an RFC 8288 ``Link: <url>; rel="next"`` header, absent on the last page, as
GitHub's API does. The cursor is an opaque token holding the sort key of the
last item served, so pages stay stable while rows are inserted or deleted
and cost the same on page 1 and page 10,000 (no OFFSET).
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, request

from common.errors import ApiError

INVALID_CURSOR_MESSAGE = "The cursor is invalid; use the URL from the previous page's Link header."


@dataclass(frozen=True)
class PageRequest:
    """What the client asked for: how many items, and after which sort key."""

    limit: int
    after: list[Any] | None


def encode_cursor(sort_key: list[Any]) -> str:
    """Turn a sort key (JSON-serializable values) into an opaque URL-safe token."""
    raw = json.dumps(sort_key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, *, arity: int) -> list[Any]:
    """Decode a token made by :func:`encode_cursor`, or raise a 400."""
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        value = None
    if not isinstance(value, list) or len(value) != arity:
        raise ApiError(400, INVALID_CURSOR_MESSAGE)
    return value


def parse_page_request(*, default_limit: int, max_limit: int, arity: int) -> PageRequest:
    """Read ``limit`` and ``cursor`` from the query string, rejecting bad values with 400."""
    raw_limit = request.args.get("limit")
    limit = default_limit
    if raw_limit is not None:
        # isascii: str.isdigit() also accepts digits int() refuses, such as "²".
        digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 9
        if not digits or not 1 <= int(raw_limit) <= max_limit:
            raise ApiError(
                400,
                f"limit must be a whole number from 1 to {max_limit}.",
                details={"limit": raw_limit},
            )
        limit = int(raw_limit)
    cursor = request.args.get("cursor")
    after = decode_cursor(cursor, arity=arity) if cursor else None
    return PageRequest(limit=limit, after=after)


def json_page_response(items: list[Any], *, page: PageRequest, sort_key_of, json_of) -> Response:
    """Answer with the JSON array of the first ``page.limit`` items and a Link to the next page.

    Callers fetch ``limit + 1`` rows: the extra one only tells whether a next
    page exists, and is not returned. Each item's JSON text is already built
    (``json_of(item)``, by PostgreSQL on the hot paths); ``sort_key_of(item)``
    gives the cursor of the last one.
    """
    has_next = len(items) > page.limit
    items = items[: page.limit]
    body = "[" + ",".join(json_of(item) for item in items) + "]\n"
    response = current_app.response_class(body, mimetype="application/json")
    _link_next_page(response, items, page=page, has_next=has_next, sort_key_of=sort_key_of)
    return response


def _link_next_page(response: Response, items, *, page, has_next: bool, sort_key_of) -> None:
    if has_next and items:
        # Every parameter the client sent is kept as given (filters such as ``type`` must
        # stay), built into the URL as data: never as keyword arguments of url_for, where
        # a parameter named like a view argument or ``_external`` would break it.
        args = request.args.to_dict()
        args["cursor"] = encode_cursor(sort_key_of(items[-1]))
        args["limit"] = str(page.limit)
        response.headers["Link"] = f'<{request.base_url}?{urlencode(args)}>; rel="next"'
