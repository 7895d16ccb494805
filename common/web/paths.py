"""A request's path as the logs show it: no personal data, one line."""

import re

from flask import request

# What looks like an email in a path no route matched.
EMAIL_LIKE = re.compile(r"[^/@\s]+@[^/\s]+")
# A route's email segment, as the access log shows it.
EMAIL_PLACEHOLDER = "<email>"


def loggable_path() -> str:
    """Return the request's path as logs show it: no email, no line break.

    An email in the path (``/users/<email>``) is personal data and logs must
    never hold one: a matched route shows its placeholder instead, an
    unmatched path has anything email-like replaced. A path may also carry
    any character (``%0A`` decodes to a newline); written as is, it would
    split one log line in two, or forge a second one, so control characters
    are escaped.
    """
    rule, arguments = request.url_rule, request.view_args or {}
    if rule is not None and "email" in arguments:
        path = request.path.replace(arguments["email"], EMAIL_PLACEHOLDER)
    else:
        path = EMAIL_LIKE.sub(EMAIL_PLACEHOLDER, request.path)
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in path
    )
