"""Who may call what, with AUTH_MODE=on: every route and method against every kind of caller.

The table below is the contract: each route's scope, and where the user it
acts for is named. Each route is called, over HTTP against the real
services, with each credential case; the answer must be 401 (no valid
credential), 403 (valid, not allowed) or an answer of the route itself.
"""

import time
import uuid
from dataclasses import dataclass

import pytest

from common.web.auth import SCOPES
from tests.integration.auth_support import BOUND_EMAIL, bearer, signing_key
from tests.utils import api_document, new_key

pytestmark = pytest.mark.local_stack

ANY = "any credential"
PUBLIC = "public"


@dataclass(frozen=True)
class Route:
    """One route and method: its scope, and where it names the user it acts for."""

    service: str
    method: str
    path: str
    scope: str
    user_in: str | None = None  # "path", "body", "query" or "list" (acts for every user)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


ROUTES = [
    Route("um", "GET", "/ping", PUBLIC),
    Route("um", "GET", "/health", ANY),
    Route("um", "GET", "/metrics", "ops"),
    Route("um", "GET", "/openapi.json", ANY),
    Route("um", "GET", "/docs/", ANY),
    Route("um", "GET", "/docs/swagger-ui.css", ANY),
    Route("um", "GET", "/users", "users:read", "list"),
    Route("um", "GET", "/users/{email}", "users:read", "path"),
    Route("um", "POST", "/users", "users:write", "body"),
    Route("um", "DELETE", "/users/{email}", "users:write", "path"),
    Route("dc", "GET", "/ping", PUBLIC),
    Route("dc", "GET", "/health", ANY),
    Route("dc", "GET", "/metrics", "ops"),
    Route("dc", "GET", "/openapi.json", ANY),
    Route("dc", "GET", "/docs/", ANY),
    Route("dc", "GET", "/docs/swagger-ui.css", ANY),
    Route("dc", "POST", "/interests", "interests:write", "body"),
    Route("dc", "PUT", "/interests", "interests:write", "body"),
    Route("dc", "DELETE", "/interests", "interests:write", "body"),
    Route("dc", "GET", "/interests/{email}", "interests:read", "path"),
    Route("dc", "GET", "/flights", "flights:read", "query"),
    Route("dc", "GET", "/flights/{airport_code}", "flights:read"),
    Route("dc", "GET", "/flights/last/{icao}", "flights:read"),
    Route("dc", "GET", "/flights/average/{icao}", "flights:read"),
    Route("dc", "POST", "/collection/runs", "collection:run"),
]

ALL_WORKING = set(SCOPES) - {"admin"}
# Tokens that name no user the services may trust: they act for nobody.
UNBOUND_TOKENS = {"token without email", "token with an unverified email"}
CASES = (
    "no credential",
    "malformed",
    "wrong signature",
    "expired",
    "wrong audience",
    "unknown key",
    "missing scope",
    "right scope (key)",
    "right scope (token)",
    "another user's email (key)",
    "another user's email (token)",
    "token without email",
    "token with an unverified email",
    "admin",
    "admin token without email",
)


def credentials(case: str, route: Route, secure, email: str) -> dict[str, str]:
    """The request headers that present ``case``'s credential for ``route`` acting for ``email``."""
    idp, keys = secure.idp, secure.keys
    if case == "no credential":
        return {}
    if case == "malformed":
        return bearer("not-a-token")
    if case == "wrong signature":
        return bearer(idp.token(ALL_WORKING, key=signing_key()))  # the published kid, not its key
    if case == "expired":
        return bearer(idp.token(ALL_WORKING, lifetime=-120))  # beyond the clock leeway
    if case == "wrong audience":
        return bearer(idp.token(ALL_WORKING, aud="another-api"))
    if case == "unknown key":
        return {"X-API-Key": uuid.uuid4().hex}
    if case == "missing scope":
        return keys.header("none" if route.scope in (ANY, PUBLIC) else f"all-but-{route.scope}")
    if case == "right scope (key)":
        return keys.header("all")
    if case == "right scope (token)":
        return bearer(idp.token(ALL_WORKING, email=email))
    if case == "another user's email (key)":
        return keys.header("bound")
    if case == "another user's email (token)":
        return bearer(idp.token(ALL_WORKING, email=BOUND_EMAIL))
    if case == "token without email":
        return bearer(idp.token(ALL_WORKING))
    if case == "token with an unverified email":
        return bearer(idp.token(ALL_WORKING, email=email, email_verified=False))
    if case == "admin":
        return keys.header("bound-admin")
    if case == "admin token without email":
        return bearer(idp.token(SCOPES))
    raise AssertionError(case)


def expected(case: str, route: Route) -> str:
    """``401``, ``403`` or ``allowed`` (the route's own answer, whatever it is)."""
    if route.scope == PUBLIC:
        return "allowed"
    if case in {"no credential", "malformed", "wrong signature", "expired", "wrong audience"}:
        return "401"
    if case == "unknown key":
        return "401"
    if case == "missing scope":
        return "allowed" if route.scope == ANY else "403"
    if case == "right scope (token)" and route.user_in == "list":
        return "403"  # a listing acts for every user; the token acts for its own
    if case.startswith("another user's email") or case in UNBOUND_TOKENS:
        # A token stands for the person it was issued to: naming no (verified) email, it
        # acts for nobody; routes that act for no particular user stay open to it.
        return "403" if route.user_in is not None else "allowed"
    return "allowed"


def send(secure, route: Route, headers: dict[str, str], email: str):
    """Call the route for ``email`` (not the bound user), as a client of that route would."""
    api = secure.um if route.service == "um" else secure.dc
    path = route.path.format(email=email, airport_code="LIRF", icao="LIRF")
    kwargs: dict = {"headers": {**headers, **new_key()}}
    if route.user_in == "query":
        kwargs["params"] = {"email": email}
    if route.path == "/users" and route.method == "POST":
        kwargs["json"] = {"email": email, "first_name": "Ada", "last_name": "Lovelace"}
    elif route.path == "/interests" and route.method == "PUT":
        kwargs["json"] = {"email": email, "airport_code": "LIRF", "high_value": 10}
    elif route.path == "/interests":
        kwargs["json"] = {"email": email, "airport_code": "LIRF"}
    return api.request(route.method, path, **kwargs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_route_answers_each_caller_as_the_scopes_say(secure_stack, route, case):
    email = f"someone.{uuid.uuid4().hex[:10]}@example.com"
    response = send(secure_stack, route, credentials(case, route, secure_stack, email), email)
    outcome = expected(case, route)
    assert response.status_code < 500, response.text
    if outcome == "allowed":
        assert response.status_code not in (401, 403), (response.status_code, response.text)
    else:
        assert response.status_code == int(outcome), (response.status_code, response.text)
        body = response.json()
        assert body["error"]
        if outcome == "401":
            assert "X-API-Key" in response.headers["WWW-Authenticate"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("package", ["user_manager", "data_collector"])
def test_the_table_covers_every_documented_operation(package):
    service = "um" if package == "user_manager" else "dc"
    listed = {(r.method, r.path) for r in ROUTES if r.service == service}
    for path, operations in api_document(package)["paths"].items():
        for method in operations:
            assert (method.upper(), path) in listed, f"{method.upper()} {path} is not in ROUTES"


def test_a_bound_credential_acts_for_its_own_user(secure_stack):
    um, dc, keys = secure_stack.um, secure_stack.dc, secure_stack.keys
    own = keys.header("bound")
    body = {"email": BOUND_EMAIL, "first_name": "Bo", "last_name": "Und"}
    created = um.post("/users", json=body, headers={**own, **new_key()})
    assert created.status_code in (201, 409), created.text
    assert um.get(f"/users/{BOUND_EMAIL}", headers=own).status_code == 200
    interest = {"email": BOUND_EMAIL, "airport_code": "LIRF"}
    assert dc.post("/interests", json=interest, headers=own).status_code in (200, 201)
    assert dc.get(f"/interests/{BOUND_EMAIL}", headers=own).json()[0]["airport_code"] == "LIRF"
    token = bearer(secure_stack.idp.token(ALL_WORKING, email=BOUND_EMAIL.upper()))
    assert dc.get(f"/interests/{BOUND_EMAIL}", headers=token).status_code == 200


def test_health_shows_its_detail_only_to_ops(secure_stack):
    keys = secure_stack.keys
    for api in (secure_stack.um, secure_stack.dc):
        plain = api.get("/health", headers=keys.header("none"))
        assert plain.status_code == 200 and plain.json() == {"status": "ok"}
        detail = api.get("/health", headers=keys.header("all")).json()
        assert {"service", "database", "peer"} <= detail.keys()


def test_idempotency_keys_of_two_callers_never_meet(secure_stack):
    um, keys = secure_stack.um, secure_stack.keys
    shared = new_key()
    first = {"email": f"a.{uuid.uuid4().hex[:8]}@example.com", "first_name": "A", "last_name": "A"}
    second = {"email": f"b.{uuid.uuid4().hex[:8]}@example.com", "first_name": "B", "last_name": "B"}
    one = um.post("/users", json=first, headers={**keys.header("all"), **shared})
    other = um.post("/users", json=second, headers={**keys.header("bound-admin"), **shared})
    assert (one.status_code, other.status_code) == (201, 201), (one.text, other.text)
    again = um.post("/users", json=first, headers={**keys.header("all"), **shared})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["user"]["email"] == first["email"]


def test_tokens_signed_without_an_asymmetric_key_are_refused(secure_stack):
    import jwt

    now = int(time.time())
    claims = {"iss": "https://idp.flight-tracker.test", "aud": "flight-tracker-api"}
    claims.update({"sub": "x", "exp": now + 300, "scope": " ".join(SCOPES)})
    for token in (
        jwt.encode(claims, "a shared secret of thirty-two bytes!", algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
    ):
        response = secure_stack.um.get("/users", headers=bearer(token))
        assert response.status_code == 401, response.text


def test_a_token_valid_from_later_is_refused_until_then(secure_stack):
    later = secure_stack.idp.token(ALL_WORKING, not_before=600)
    assert secure_stack.um.get("/metrics", headers=bearer(later)).status_code == 401
    # Within the clock leeway, a token a few seconds "from the future" is fine.
    soon = secure_stack.idp.token(ALL_WORKING, not_before=5)
    assert secure_stack.um.get("/metrics", headers=bearer(soon)).status_code == 200


def test_a_rotated_signing_key_is_picked_up_from_the_jwks(secure_stack):
    idp = secure_stack.idp
    new_kid = idp.add_key(publish=False)
    early = idp.token(ALL_WORKING, kid=new_kid)
    assert secure_stack.um.get("/metrics", headers=bearer(early)).status_code == 401
    idp.published.add(new_kid)
    deadline = time.monotonic() + 30
    while True:  # the unknown kid is looked up again once the refresh cooldown has passed
        response = secure_stack.um.get(
            "/metrics", headers=bearer(idp.token(ALL_WORKING, kid=new_kid))
        )
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.status_code == 200, response.text


def test_api_keys_are_read_again_when_the_file_changes(secure_stack):
    added = secure_stack.keys.add(f"late-{uuid.uuid4().hex[:6]}", ["users:read"])
    deadline = time.monotonic() + 30
    while True:
        status = secure_stack.um.get("/users", headers={"X-API-Key": added}).status_code
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200


def test_bearer_tokens_get_a_503_while_the_issuer_cannot_be_reached(secure_stack):
    idp = secure_stack.idp
    unknown = idp.add_key(publish=True)  # not yet in the services' cache: they must fetch
    idp.reachable = False
    try:
        deadline = time.monotonic() + 30
        while True:
            token = idp.token(ALL_WORKING, kid=unknown)
            response = secure_stack.um.get("/users", headers=bearer(token))
            if response.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        # API keys do not depend on the issuer.
        assert secure_stack.um.get("/users", headers=secure_stack.keys.header("all")).ok
    finally:
        idp.reachable = True


def test_a_token_without_an_email_cannot_read_change_or_delete_another_user(secure_stack):
    um, dc, keys, idp = secure_stack.um, secure_stack.dc, secure_stack.keys, secure_stack.idp
    victim = f"victim.{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": victim, "first_name": "Vic", "last_name": "Tim"}
    body |= {
        "iban": "IT60X0542811101000000123456",
        "tax_code": f"RSSMRA85T10A{uuid.uuid4().hex[:4]}",
    }
    created = um.post("/users", json=body, headers={**keys.header("all"), **new_key()})
    assert created.status_code == 201, created.text
    for token in (
        idp.token(["users:read", "users:write", "users:pii", "interests:write"]),
        idp.token(["users:read", "users:pii"], email=victim, email_verified=False),
        idp.token(["users:read", "users:pii"], email=victim, email_verified="false"),
    ):
        headers = bearer(token)
        read = um.get(f"/users/{victim}", headers=headers)
        assert read.status_code == 403, read.text
        assert "IT60X0542811101000000123456" not in read.text
        listed = um.get("/users", headers=headers)
        assert listed.status_code == 403, listed.text
        follow = dc.post(
            "/interests", json={"email": victim, "airport_code": "LIRF"}, headers=headers
        )
        assert follow.status_code == 403, follow.text
        gone = um.delete(f"/users/{victim}", headers={**headers, **new_key()})
        assert gone.status_code == 403, gone.text
    still = um.get(f"/users/{victim}", headers=keys.header("all"))
    assert still.status_code == 200, still.text
    assert dc.get(f"/interests/{victim}", headers=keys.header("all")).json() == []
    # The token's own user, verified (or with no verification claim at all), is served.
    for verified in ({}, {"email_verified": True}, {"email_verified": "true"}):
        own = bearer(idp.token(["users:read", "users:pii"], email=victim, **verified))
        assert um.get(f"/users/{victim}", headers=own).status_code == 200
    # Routes that act for no particular user stay open to a token without an email.
    anonymous = bearer(idp.token(["flights:read", "collection:run", "ops"]))
    assert dc.get("/flights", headers=anonymous).status_code == 200
    assert um.get("/metrics", headers=anonymous).status_code == 200
    # 202, or 429 while a run asked for moments ago (by the other cases) is still pending.
    assert dc.post("/collection/runs", headers=anonymous).status_code in (202, 429)
