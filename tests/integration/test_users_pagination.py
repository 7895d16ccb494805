"""``GET /users``: a JSON array served in pages, the next one announced by an RFC 8288 Link."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest

from common.web.pagination import encode_cursor
from tests.utils import create_user, new_key

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def make_users(um, prefix: str, count: int) -> list[str]:
    """Create users whose emails sort together, right after ``prefix``."""
    emails = [f"{prefix}-{index:03d}@example.com" for index in range(count)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda email: create_user(um, email), emails))


def walk(um, url: str, *, until_prefix_ends: str | None = None, between_pages=None):
    """Follow Link headers from ``url``; return the pages served (lists of emails).

    With ``until_prefix_ends``, stop at the first page that reaches past the
    users with that prefix (the rest of a shared stack is not our business).
    """
    pages: list[list[str]] = []
    while url:
        response = um.session.get(url, timeout=10)
        assert response.status_code == 200
        page = [user["email"] for user in response.json()]
        pages.append(page)
        if until_prefix_ends and any(not email.startswith(until_prefix_ends) for email in page):
            break
        url = response.links.get("next", {}).get("url")
        if url and between_pages:
            between_pages(len(pages))
    return pages


def test_default_page_size_and_link_to_the_next_page(um):
    make_users(um, f"a-page-{uuid.uuid4().hex[:8]}", DEFAULT_PAGE_SIZE + 1)
    response = um.get("/users")
    assert response.status_code == 200
    assert len(response.json()) == DEFAULT_PAGE_SIZE
    next_url = response.links["next"]["url"]
    assert "cursor=" in next_url
    assert f"limit={DEFAULT_PAGE_SIZE}" in next_url
    assert response.headers["Link"].endswith('>; rel="next"')


def test_limit_is_bounded(um):
    assert len(um.get("/users", params={"limit": 2}).json()) == 2
    assert um.get("/users", params={"limit": MAX_PAGE_SIZE}).status_code == 200
    for bad in [0, MAX_PAGE_SIZE + 1, -1, "ten", "1.5", "²"]:
        response = um.get("/users", params={"limit": bad})
        assert response.status_code == 400, bad
        assert "limit" in response.json()["error"]


def test_a_forged_cursor_is_a_400(um):
    for cursor in ["garbage!", encode_cursor([1]), encode_cursor(["a", "b"]), "e30"]:
        response = um.get("/users", params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert "cursor" in response.json()["error"]


@pytest.mark.local_stack
def test_walking_the_whole_list_ends_on_a_page_without_link(um):
    create_user(um)
    pages = walk(um, f"{um.base_url}/users?limit={MAX_PAGE_SIZE}")
    emails = [email for page in pages for email in page]
    assert all(pages), "an empty page was announced by a Link"
    assert len(emails) == len(set(emails))
    if len(emails) <= MAX_PAGE_SIZE:
        # A last page that is exactly full still has no Link.
        exact = um.get("/users", params={"limit": len(emails)})
        assert len(exact.json()) == len(emails)
        assert "next" not in exact.links


def test_following_links_sees_every_user_exactly_once_while_users_come_and_go(um):
    prefix = f"walk-{uuid.uuid4().hex[:8]}"
    original = make_users(um, prefix, 12)
    added_ahead: list[str] = []
    removed_ahead: list[str] = []

    def meanwhile(pages: int) -> None:
        # Users appear behind and ahead of the walk; one not yet reached is deleted.
        create_user(um, f"{prefix}-000a-{pages}@example.com")
        added_ahead.append(create_user(um, f"{prefix}-999-{pages}@example.com"))
        if pages == 1:
            removed_ahead.append(original[-1])
            assert um.delete(f"/users/{original[-1]}", headers=new_key()).status_code == 200

    start = f"{um.base_url}/users?limit=3&cursor={encode_cursor([prefix])}"
    pages = walk(um, start, until_prefix_ends=prefix, between_pages=meanwhile)

    ours = [email for page in pages for email in page if email.startswith(prefix)]
    assert len(pages) >= 5
    assert len(ours) == len(set(ours)), "a user was served twice"
    survivors = [email for email in original if email not in removed_ahead]
    assert set(survivors) <= set(ours), "a user present all along was skipped"
    assert not set(removed_ahead) & set(ours)
    assert set(added_ahead) <= set(ours)


def test_next_link_keeps_unknown_parameters_as_plain_data(um):
    for _ in range(2):
        create_user(um)
    response = um.get(
        "/users", params={"limit": "1", "endpoint": "x", "_external": "0", "_anchor": "frag"}
    )
    assert response.status_code == 200
    next_url = response.links["next"]["url"]
    assert "#" not in next_url
    assert parse_qs(urlsplit(next_url).query)["endpoint"] == ["x"]
    assert um.get(next_url.removeprefix(um.base_url)).status_code == 200
