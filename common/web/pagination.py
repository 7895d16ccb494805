"""Keyset pagination shared by every list endpoint.

Lists are plain JSON arrays, in no envelope; the next page is announced
in an RFC 8288 ``Link: <url>; rel="next"`` header, absent on the last page, as
GitHub's API does. The cursor is an opaque token holding the sort key of the
last item served, so pages stay stable while rows are inserted or deleted
and cost the same on page 1 and page 10,000 (no OFFSET).
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from flask import Response, current_app, request
from pydantic import BaseModel, Field, create_model
from sqlalchemy import Select, Subquery, Text, cast, func, select, true
from werkzeug.urls import iri_to_uri

from common.web.errors import ApiError
from common.web.inputs import whole_number

INVALID_CURSOR_MESSAGE = "The cursor is invalid; use the URL from the previous page's Link header."
# The longest cursor a list writes: a sort key of one email of 254 characters, each escaped
# in JSON as up to 12 ASCII characters, in base64. Longer is not one of ours.
MAX_CURSOR_LENGTH = 4096
# What a URL's path may hold unencoded besides letters, digits and ``-._~`` (RFC 3986).
URL_PATH_SAFE = "/!$&'()*+,;=:@"


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
    """Decode a token made by :func:`encode_cursor`, or raise a 400.

    Only the shape is checked here (a list of ``arity`` values): each list
    checks every value of its sort key (with :func:`cursor_time` for times)
    before any reaches the database, since a cursor passes through the
    client's hands and may come back holding anything JSON can.
    """
    value = None
    if len(token) <= MAX_CURSOR_LENGTH:
        try:
            padded = token + "=" * (-len(token) % 4)
            value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            # RecursionError: brackets nested deeper than the parser goes.
            value = None
    if not isinstance(value, list) or len(value) != arity:
        raise ApiError(400, INVALID_CURSOR_MESSAGE)
    return value


def cursor_time(value: Any) -> datetime:
    """Read a time from a cursor, as ``isoformat_utc`` wrote it; raise ``ValueError`` otherwise.

    Only a UTC time is one of ours. An offset is refused rather than
    converted: Python takes offsets up to 24 hours, PostgreSQL only up to
    15:59 (an error there, not a 400), and converting can leave the years
    Python can hold. A time without an offset would be read in the database
    session's zone.
    """
    if not isinstance(value, str):
        raise ValueError("a cursor's time is a string")
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() != timedelta(0):
        raise ValueError("a cursor's time is in UTC")
    return moment


def page_url() -> str:
    """Return the URL of this list for a Link header: never built from the client's ``Host``.

    The configured ``PUBLIC_URL`` (where clients reach this service) comes
    first; behind ``TRUSTED_PROXIES`` proxies, the address they forwarded
    (``X-Forwarded-*``, applied by the app factory); otherwise a reference
    relative to the request (RFC 8288 allows it), since a ``Host`` header is
    whatever the client chose to send.
    """
    # The path as the client sent it, percent-encoded again: a header carries no
    # newline, and a URL nothing but ASCII (``/flights/LIRF%0A`` lists LIRF).
    path = quote(request.path, safe=URL_PATH_SAFE)
    public = current_app.config["PUBLIC_URL"]
    if public:
        return public.rstrip("/") + path
    if current_app.config["TRUSTED_PROXIES"]:
        return iri_to_uri(request.root_url).rstrip("/") + path
    return path


class PageLink(BaseModel):
    """The header of a list that has a next page."""

    link: str = Field(
        None,
        alias="Link",
        description='RFC 8288: `<url>; rel="next"` for the next page; absent on the last page.',
    )


def page_query(*, default_limit: int, max_limit: int) -> type[BaseModel]:
    """Return the model of ``limit`` and ``cursor`` as the API document shows them.

    Documentation only: :func:`parse_page_request` reads them, with the same limits.
    """
    return create_model(
        "PageQuery",
        limit=(
            int,
            Field(
                default_limit,
                ge=1,
                le=max_limit,
                description=f"Items per page, 1 to {max_limit} (default {default_limit}).",
                examples=[min(50, max_limit)],
            ),
        ),
        cursor=(
            str,
            Field(
                None,
                description="Opaque position of the page: take it from the previous page's "
                "`Link` header, never build it.",
            ),
        ),
    )


def parse_page_request(*, default_limit: int, max_limit: int, arity: int) -> PageRequest:
    """Read ``limit`` and ``cursor`` from the query string, rejecting bad values with 400."""
    raw_limit = request.args.get("limit")
    limit = default_limit
    if raw_limit is not None:
        limit = whole_number("limit", raw_limit, minimum=1, maximum=max_limit)
    cursor = request.args.get("cursor")
    after = decode_cursor(cursor, arity=arity) if cursor else None
    return PageRequest(limit=limit, after=after)


def json_item_rows(page: Subquery, fields: list, *, keys: list, order_by: list) -> Select:
    """Select each row of ``page`` as ``item``, the JSON text of ``fields``, beside ``keys``.

    PostgreSQL builds the JSON (``row_to_json`` of a lateral select over the
    page's row, so field names and order are the labels of ``fields``), and
    :func:`json_page_response` joins the items without parsing them again.
    """
    item = select(*fields).correlate(page).lateral("item")
    return (
        select(cast(func.row_to_json(item.table_valued()), Text).label("item"), *keys)
        .select_from(page.join(item, true()))
        .order_by(*order_by)
    )


def json_page_response(rows: list[Any], *, page: PageRequest, sort_key_of) -> Response:
    """Answer with the JSON array of the first ``page.limit`` rows and a Link to the next page.

    ``rows`` come from a :func:`json_item_rows` query, each with its JSON text
    in ``item``; callers fetch ``limit + 1`` rows: the extra one only tells
    whether a next page exists, and is not returned. ``sort_key_of(row)``
    gives the cursor of the last one.
    """
    has_next = len(rows) > page.limit
    rows = rows[: page.limit]
    body = "[" + ",".join(row.item for row in rows) + "]\n"
    response = current_app.response_class(body, mimetype="application/json")
    if has_next and rows:
        # Every parameter the client sent is kept as given (filters such as ``type`` must
        # stay), built into the URL as data: never as keyword arguments of url_for, where
        # a parameter named like a view argument or ``_external`` would break it.
        args = request.args.to_dict()
        args["cursor"] = encode_cursor(sort_key_of(rows[-1]))
        args["limit"] = str(page.limit)
        response.headers["Link"] = f'<{page_url()}?{urlencode(args)}>; rel="next"'
    return response
