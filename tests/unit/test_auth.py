"""The pieces of authentication and masking that need no service (a JWKS is served here)."""

import hashlib
import json
import socket
import threading
import time

import pytest

from common.settings import ConfigError
from common.web import auth
from common.web.auth import ANYONE, SCOPES, Caller, parse_api_keys
from common.web.errors import ApiError
from tests.integration.auth_support import AUDIENCE, ISSUER, IdentityProvider, signing_key
from user_manager.privacy import mask

DIGEST = hashlib.sha256(b"a key").hexdigest()


def test_keys_are_found_by_the_hash_of_the_key_and_bound_emails_normalized():
    callers = parse_api_keys(
        [
            {
                "name": "mario",
                "sha256": DIGEST.upper(),
                "scopes": ["users:read"],
                "email": "Mario@X.com",
            }
        ],
        source="keys.json",
    )
    caller = callers[DIGEST]
    assert caller.scopes == {"users:read"} and caller.email == "mario@x.com"
    assert caller.may_act_for("mario@x.com") and not caller.may_act_for("luigi@x.com")


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"sha256": DIGEST, "scopes": []}, "needs a name"),
        ({"name": "k", "sha256": "abc", "scopes": []}, "64 hex digits"),
        ({"name": "k", "sha256": "g" * 64, "scopes": []}, "64 hex digits"),
        ({"name": "k", "sha256": DIGEST, "scopes": ["root"]}, "scopes"),
        ({"name": "k", "sha256": DIGEST, "scopes": "ops"}, "scopes"),
        ({"name": "k", "sha256": DIGEST, "scopes": [["users:read"]]}, "scopes"),
        ({"name": "k", "sha256": DIGEST, "scopes": [], "email": "not an email"}, "email"),
        ({"name": "k", "sha256": DIGEST, "scopes": [], "email": "\u212aate@x.com"}, "KELVIN"),
        ({"name": "k", "sha256": DIGEST, "scopes": [], "email": 7}, "email is not a string"),
    ],
)
def test_a_malformed_keys_file_fails_saying_which_key_and_why(entry, complaint):
    with pytest.raises(ConfigError, match=complaint):
        parse_api_keys([entry], source="keys.json")


def test_keys_of_one_name_are_one_principal_so_they_must_bind_the_same_user():
    """A name scopes Idempotency-Keys: two users under one name would replay each other's."""
    other = hashlib.sha256(b"another key").hexdigest()
    rotated = parse_api_keys(
        [
            {"name": "mario", "sha256": DIGEST, "scopes": [], "email": "mario@x.com"},
            {"name": "mario", "sha256": other, "scopes": [], "email": "Mario@X.com"},
        ],
        source="keys.json",
    )
    assert rotated[DIGEST].identity == rotated[other].identity
    for second in ({"email": "luigi@x.com"}, {}):
        with pytest.raises(ConfigError, match=r"key 2 \(mario\): an earlier key of this name"):
            parse_api_keys(
                [
                    {"name": "mario", "sha256": DIGEST, "scopes": [], "email": "mario@x.com"},
                    {"name": "mario", "sha256": other, "scopes": [], **second},
                ],
                source="keys.json",
            )
    with pytest.raises(ConfigError, match=r"key 2 \(luigi\): sha256 repeats"):
        parse_api_keys(
            [
                {"name": "mario", "sha256": DIGEST, "scopes": []},
                {"name": "luigi", "sha256": DIGEST.upper(), "scopes": ["admin"]},
            ],
            source="keys.json",
        )


def test_admin_lifts_the_binding_and_service_keys_are_limited_by_scope_only():
    bound_admin = Caller("k", frozenset({"admin"}), "a@x.com", "id")
    service = parse_api_keys(
        [{"name": "svc", "sha256": DIGEST, "scopes": ["users:read"]}], source="keys.json"
    )[DIGEST]
    assert bound_admin.may_act_for("b@x.com") and bound_admin.acts_for_every_user()
    assert service.may_act_for("b@x.com") and service.acts_for_every_user()
    assert ANYONE.scopes == set(SCOPES) and ANYONE.email is None and ANYONE.acts_for_every_user()


def test_a_caller_bound_to_nobody_acts_for_nobody():
    nobody = Caller("jwt:x", frozenset({"users:read", "users:pii"}), None, "id")
    assert not nobody.may_act_for("b@x.com") and not nobody.acts_for_every_user()


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("IT60X0542811101000000123456", "IT60…3456"),
        ("RSSMRA85T10A562S", "RSSM…562S"),
        ("ABCDEFGH", "AB…GH"),
        ("AB12", "A…2"),
        ("ABC", "…"),
        (None, None),
    ],
)
def test_masking_keeps_a_few_characters_at_each_end(value, masked):
    assert mask(value) == masked


@pytest.fixture
def provider():
    identity = IdentityProvider()
    yield identity
    identity.close()


def test_a_token_sent_with_every_request_has_its_signature_checked_once_a_minute(
    provider, monkeypatch
):
    tokens = auth.BearerTokens(
        jwks_url=provider.jwks_url, issuer=ISSUER, audience=AUDIENCE, email_claim="email"
    )
    checks = []
    real_decode = tokens._jwt.decode
    monkeypatch.setattr(
        tokens._jwt, "decode", lambda *a, **k: checks.append(1) or real_decode(*a, **k)
    )
    token = provider.token(["users:read"], email="Ann@Example.com", lifetime=3600)

    callers = {tokens.verify(token) for _ in range(10)}
    assert len(callers) == 1 and next(iter(callers)).email == "ann@example.com"
    assert len(checks) == 1
    clock = time.time() + auth.VERIFIED_TOKEN_SECONDS + 1
    monkeypatch.setattr(auth.time, "time", lambda: clock)
    tokens.verify(token)
    assert len(checks) == 2

    forged = provider.token(["admin"], key=signing_key())
    for _ in range(2):
        with pytest.raises(ApiError) as refused:
            tokens.verify(forged)
        assert refused.value.status == 401
    assert len(checks) == 4


def test_made_up_key_ids_ask_the_issuer_once_a_cooldown_even_while_it_fails(provider):
    tokens = auth.BearerTokens(
        jwks_url=provider.jwks_url, issuer=ISSUER, audience=AUDIENCE, email_claim="email"
    )
    assert tokens.verify(provider.token(["users:read"])).scopes == {"users:read"}
    fetched = provider.fetches
    stranger = signing_key()

    def refused(kid: str) -> int:
        with pytest.raises(ApiError) as refusal:
            tokens.verify(provider.token(["admin"], kid=kid, key=stranger))
        return refusal.value.status

    # The issuer is up: one ask for the first unknown key id, then none within the cooldown.
    tokens._refreshed_at -= auth.JWKS_REFRESH_COOLDOWN_SECONDS
    assert [refused(f"made-up-{n}") for n in range(10)] == [401] * 10
    assert provider.fetches == fetched + 1
    # The issuer fails: one ask after the cooldown, then none; tokens it signed still pass.
    provider.reachable = False
    tokens._refreshed_at -= auth.JWKS_REFRESH_COOLDOWN_SECONDS
    assert [refused(f"unknown-{n}") for n in range(10)] == [503] * 10
    assert provider.fetches == fetched + 2
    assert tokens.verify(provider.token(["users:read"])).scopes == {"users:read"}
    assert provider.fetches == fetched + 2


def test_an_issuer_publishing_no_usable_key_is_a_401_each_time_not_an_outage(provider):
    provider.published.clear()
    tokens = auth.BearerTokens(
        jwks_url=provider.jwks_url, issuer=ISSUER, audience=AUDIENCE, email_claim="email"
    )
    statuses = []
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            tokens.verify(provider.token(["users:read"]))
        statuses.append(refused.value.status)
    assert statuses == [401, 401, 401]


def test_requests_queued_behind_an_issuer_that_hangs_wait_for_one_ask_only(monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    asked = []  # connections it accepted, and never answers
    threading.Thread(
        target=lambda: [asked.append(listener.accept()) for _ in range(8)], daemon=True
    ).start()
    # As by default, an ask's timeout is as long as the cooldown (shorter, to run quickly).
    monkeypatch.setattr(auth, "JWKS_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(auth, "JWKS_REFRESH_COOLDOWN_SECONDS", 0.5)
    tokens = auth.BearerTokens(
        jwks_url=f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json",
        issuer=ISSUER,
        audience=AUDIENCE,
        email_claim="email",
    )
    stranger = IdentityProvider()
    statuses = []

    def check(n: int) -> None:
        try:
            tokens.verify(stranger.token(kid=f"made-up-{n}", key=stranger.keys[stranger.kid]))
        except ApiError as refusal:
            statuses.append(refusal.status)

    checks = [threading.Thread(target=check, args=(n,)) for n in range(6)]
    for thread in checks:
        thread.start()
    for thread in checks:
        thread.join(timeout=30)
    stranger.close()
    listener.close()
    assert statuses == [503] * 6
    assert len(asked) == 1


@pytest.mark.parametrize(
    ("claims", "acts_for"),
    [
        ({}, None),  # no email claim: a token for nobody in particular
        ({"email": "Ann@Example.com"}, "ann@example.com"),
        ({"email": "ann@example.com", "email_verified": True}, "ann@example.com"),
        ({"email": "ann@example.com", "email_verified": "true"}, "ann@example.com"),
        ({"email": "ann@example.com", "email_verified": False}, None),
        ({"email": "ann@example.com", "email_verified": "false"}, None),
        ({"email": "ann@example.com", "email_verified": None}, None),
    ],
)
def test_a_token_acts_only_for_the_verified_email_it_names(provider, claims, acts_for):
    tokens = auth.BearerTokens(
        jwks_url=provider.jwks_url, issuer=ISSUER, audience=AUDIENCE, email_claim="email"
    )
    caller = tokens.verify(provider.token(["users:read", "users:pii", "users:write"], **claims))
    assert caller.email == acts_for
    assert not caller.acts_for_every_user()
    assert caller.may_act_for("ann@example.com") == (acts_for is not None)
    assert not caller.may_act_for("bob@example.com")
    admin = tokens.verify(provider.token(["admin"], **claims))
    assert admin.may_act_for("bob@example.com") and admin.acts_for_every_user()


def keys_file(path, *names: str) -> dict[str, str]:
    """Write a keys file granting ``ops`` to a new key per name; return the keys."""
    keys = {name: f"key-of-{name}" for name in names}
    entries = [
        {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["ops"]}
        for name, key in keys.items()
    ]
    path.write_text(json.dumps(entries))
    return keys


@pytest.mark.parametrize(
    "breakage",
    ["removed", "a directory", "not JSON", "not a keys list", "scopes of lists", "nested"],
)
def test_a_keys_file_that_cannot_be_used_accepts_no_key_until_fixed(
    tmp_path, monkeypatch, caplog, breakage
):
    monkeypatch.setattr(auth, "KEYS_FILE_CHECK_SECONDS", 0)
    path = tmp_path / "keys.json"
    key = keys_file(path, "ops")["ops"]
    keys = auth.ApiKeys(str(path))
    assert keys.find(key).name == "key:ops"
    assert keys.health() == {"status": "ok", "keys": 1}

    path.unlink()
    if breakage == "a directory":
        path.mkdir()
    elif breakage == "not JSON":
        path.write_text('[{"name": "ops", "sha2')  # half written
    elif breakage == "not a keys list":
        path.write_text('{"keys": []}')
    elif breakage == "scopes of lists":
        path.write_text(json.dumps([{"name": "ops", "sha256": "0" * 64, "scopes": [["ops"]]}]))
    elif breakage == "nested":
        path.write_text("[" * 100_000)
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            keys.find(key)
        assert refused.value.status == 503
    health = keys.health()
    assert health["status"] == "unavailable" and str(path) in health["error"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "no API key is accepted" in errors[0].getMessage()

    if path.is_dir():
        path.rmdir()
    keys_file(path, "ops", "new")
    assert keys.find(key).name == "key:ops"
    assert keys.health() == {"status": "ok", "keys": 2}


def authenticator_with_key(tmp_path, key: str, scopes: list[str]) -> auth.Authenticator:
    """An authenticator reading one API key (and no token issuer) from a keys file."""
    keys_file = tmp_path / "keys.json"
    digest = hashlib.sha256(key.encode()).hexdigest()
    keys_file.write_text(json.dumps([{"name": "scraper", "sha256": digest, "scopes": scopes}]))
    config = {"API_KEYS_FILE": str(keys_file), "JWT_JWKS_URL": ""}
    return auth.Authenticator(
        {**config, "JWT_ISSUER": "", "JWT_AUDIENCE": "", "JWT_EMAIL_CLAIM": ""}
    )


def test_an_api_key_may_come_as_a_bearer_token_for_clients_without_custom_headers(tmp_path):
    authenticator = authenticator_with_key(tmp_path, "scrape-key_1", ["ops"])

    caller = authenticator.authenticate({"Authorization": "Bearer scrape-key_1"})

    assert caller.name == "key:scraper" and caller.has("ops")
    with pytest.raises(ApiError, match="The API key is not valid"):
        authenticator.authenticate({"Authorization": "Bearer another-key"})
    # A JWT is never looked up as a key: without an issuer configured it is refused as a token.
    with pytest.raises(ApiError, match="Bearer tokens are not accepted"):
        authenticator.authenticate({"Authorization": "Bearer a.b.c"})
