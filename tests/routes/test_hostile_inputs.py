"""Hostile inputs get a clear 4xx: bracket bombs, forged Host and X-Forwarded-* headers."""

import pytest

from tests.utils import AppClient, create_user, new_key, user_payload
from user_manager.app import create_app


def test_a_body_of_nested_brackets_is_a_400_not_a_500(um_client, dc_client):
    for api, path, size in ((um_client, "/users", 60_000), (dc_client, "/interests", 16_000)):
        bomb = "[" * size
        headers = {"Content-Type": "application/json", **new_key()}
        response = api.post(path, data=bomb, headers=headers)
        assert response.status_code == 400, response.text
        assert "nests deeper" in response.json()["error"]


def test_nesting_is_counted_outside_strings_only(um_client):
    deep = '{"a":' * 17 + "1" + "}" * 17
    headers = {"Content-Type": "application/json", **new_key()}
    assert "nests deeper" in um_client.post("/users", data=deep, headers=headers).json()["error"]
    brackets_in_text = user_payload(first_name="[[[[[[[[[[[[[[[[[[[[[[[[[")
    assert um_client.post("/users", json=brackets_in_text, headers=new_key()).status_code == 201


def test_the_next_page_link_never_comes_from_the_host_header(um):
    create_user(um)
    create_user(um)
    response = um.get(
        "/users",
        params={"limit": "1"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 200
    assert "evil.example" not in response.headers["Link"]
    assert response.headers["Link"].startswith(f"<{um.base_url}/users?")


def test_a_redirect_points_at_a_path_never_at_the_host_header(um):
    response = um.get(
        "/docs", params={"a": "1"}, headers={"Host": "evil.example"}, allow_redirects=False
    )
    assert response.status_code == 308
    assert response.headers["Location"] == "/docs/?a=1"
    assert response.json() == {"message": "Moved to /docs/?a=1"}
    assert "evil.example" not in response.text


@pytest.fixture(scope="module")
def app_behind(local_stack):
    def build(**config):
        urls = local_stack.database_urls
        return AppClient(
            create_app({"SQLALCHEMY_DATABASE_URI": urls["USER_MANAGER_DATABASE_URL"], **config})
        )

    return build


def test_without_a_public_url_or_proxies_the_link_is_relative(app_behind, um):
    create_user(um)
    create_user(um)
    client = app_behind(PUBLIC_URL="", TRUSTED_PROXIES=0)
    response = client.get(
        "/users",
        params={"limit": "1"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.headers["Link"].startswith("</users?")


def test_behind_a_trusted_proxy_the_link_is_what_the_proxy_forwarded(app_behind, um):
    create_user(um)
    create_user(um)
    client = app_behind(PUBLIC_URL="", TRUSTED_PROXIES=1)
    forwarded = {"X-Forwarded-Host": "api.example.org", "X-Forwarded-Proto": "https"}
    response = client.get("/users", params={"limit": "1"}, headers=forwarded)
    assert response.headers["Link"].startswith("<https://api.example.org/users?")
