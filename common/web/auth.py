"""Who may call what: credentials, scopes, and the one user a credential may act for.

``AUTH_MODE=off`` (the default) keeps the original flows: every request
acts as :data:`ANYONE`, with every scope and no user binding. With
``AUTH_MODE=on`` every route but ``/ping`` needs one of two credentials:

- an API key in ``X-API-Key`` (or as ``Authorization: Bearer <key>``, for
  clients that can send no other header, such as Prometheus): looked up by
  its SHA-256 in ``API_KEYS_FILE`` (a JSON list of ``{"name", "sha256",
  "scopes", "email"?}``; the keys themselves are stored nowhere), re-read
  when the file changes;
- an OAuth2/OIDC bearer token (``Authorization: Bearer <JWT>``), verified
  against the issuer's JWKS (``JWT_JWKS_URL``, cached, fetched again for an
  unknown key id) with asymmetric algorithms only, and checked for issuer,
  audience, expiry and not-before with a small clock leeway. Scopes come from
  the space-separated ``scope`` claim, the user from ``JWT_EMAIL_CLAIM``.

A missing or invalid credential is a 401 with ``WWW-Authenticate``; a valid
one without the route's scope (:func:`requires`), or acting for a user it
may not act for (:func:`require_user`), is a 403.

Who a credential acts for, unless it holds ``admin`` (every user):

- an API key with an ``email``: that user only;
- an API key without one: any user. It is a service credential, which the
  operator issued on purpose for a service, not a person;
- a bearer token: the user its email claim names, if the issuer does not say
  that email is unverified (``email_verified`` false). A token stands for the
  person it was issued to, and identity providers commonly leave the email
  out of access tokens: one that names no verified email acts for no user.
  It may still call what acts for no particular user (flight lists without
  an email, collection runs, metrics), as its scopes allow.
"""

import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, g, request

from common.emails import normalize_email
from common.settings import ConfigError
from common.web.errors import ApiError

log = logging.getLogger(__name__)

SCOPES = (
    "users:read",
    "users:pii",
    "users:write",
    "interests:read",
    "interests:write",
    "flights:read",
    "collection:run",
    "ops",
    "admin",
)
API_KEY_HEADER = "X-API-Key"
# Signatures only a private key can make: a shared-secret (HS*) or unsigned token is refused.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
# Clocks of the issuer and of this host drift a little; a token is not refused for that.
CLOCK_LEEWAY_SECONDS = 30
# The issuer's keys are read again after this long, and at most this often for a token
# naming a key id the cache does not know (a rotation): a flood of forged key ids cannot
# make the service hammer the issuer.
JWKS_CACHE_SECONDS = 300
JWKS_REFRESH_COOLDOWN_SECONDS = 5
JWKS_TIMEOUT_SECONDS = 5
# A client sends the same token with every request until it expires. Checking its
# signature again each time costs more than the rest of a short request, so a verified
# token is remembered until it expires, but never longer than this: a key the issuer
# withdraws stops being trusted within it. Bounded, so tokens cannot fill memory.
VERIFIED_TOKEN_SECONDS = 60
VERIFIED_TOKENS_MAX = 1024
# How often the keys file is checked for changes (one stat call).
KEYS_FILE_CHECK_SECONDS = 2.0
# While the keys file cannot be used, clients holding keys are told to come back after this.
KEYS_UNUSABLE_RETRY_AFTER_SECONDS = 5
CHALLENGE = 'Bearer realm="flight-tracker", ApiKey realm="flight-tracker" header="X-API-Key"'


def _bound_email(value: Any) -> str:
    """Return the email a credential is bound to, normalized; raise ValueError saying why not.

    The same normalization as every stored address: a credential for a look-alike
    spelling of an address is refused, never bound to that address's account.
    """
    if not isinstance(value, str):
        raise ValueError("is not a string")
    return normalize_email(value)


@dataclass(frozen=True)
class Caller:
    """Who is calling: a name for logs, the scopes granted, the users it may act for.

    ``identity`` scopes the caller's idempotency keys: two callers' identical
    keys never meet. ``email``: the one user it acts for, or None. ``service``:
    a service credential, which acts for every user (an API key without an
    email). Neither, and no ``admin``: it acts for no user at all.
    """

    name: str
    scopes: frozenset[str]
    email: str | None
    identity: str
    service: bool = False

    def has(self, scope: str) -> bool:
        """Tell whether the caller was granted ``scope``."""
        return scope in self.scopes

    def acts_for_every_user(self) -> bool:
        """Tell whether the caller may act for any user (and so list them all)."""
        return self.service or self.has("admin")

    def may_act_for(self, email: str) -> bool:
        """Tell whether the caller may read or change this user's data."""
        return self.acts_for_every_user() or (self.email is not None and self.email == email)


ANYONE = Caller("anyone", frozenset(SCOPES), None, "", service=True)


def current_caller() -> Caller:
    """Return the caller of the request being handled (:data:`ANYONE` when auth is off)."""
    return g.get("caller", ANYONE)


def requires(scope: str) -> Callable:
    """Decorate a view: its caller must hold ``scope`` (else 403)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(*args, **kwargs):
            require_scope(scope)
            return view(*args, **kwargs)

        checked.required_scope = scope
        return checked

    return decorate


def require_scope(scope: str) -> None:
    """Raise a 403 unless the caller holds ``scope``."""
    if not current_caller().has(scope):
        raise ApiError(403, f"This credential does not grant {scope}.")


def require_user(email: str) -> None:
    """Raise a 403 unless the caller may act for the user ``email`` (normalized)."""
    caller = current_caller()
    if not caller.may_act_for(email):
        raise ApiError(403, _binding_refusal(caller))


def require_any_user() -> None:
    """Raise a 403 unless the caller may act for every user (a listing covers them all)."""
    caller = current_caller()
    if not caller.acts_for_every_user():
        raise ApiError(403, _binding_refusal(caller))


def _binding_refusal(caller: Caller) -> str:
    if caller.email is None:
        return "This credential names no verified email, so it may act for no user."
    return "This credential may act only for its own user."


def unauthorized(message: str) -> ApiError:
    """Return the 401 for a missing or invalid credential."""
    return ApiError(401, message, headers={"WWW-Authenticate": CHALLENGE})


def _identity_hash(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()


class ApiKeys:
    """The API keys of ``API_KEYS_FILE``, by the SHA-256 of the key; re-read when it changes.

    The file must be readable at start (else the service does not start).
    While running, a file that goes missing, cannot be read or does not
    parse accepts no key at all until it is fixed: removing the file is
    how an operator may revoke every key at once, and an old key must
    never outlive the file that granted it. Meanwhile a presented key gets
    a 503, the log says why (once per new failure) and ``/health`` is
    degraded. Replace the file atomically (write another, then rename it
    over this one), so that no check ever reads half of it.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        # What identifies the version of the file that was read: a change of content,
        # permissions or inode changes it.
        self._version: tuple | None = None
        # The keys and, when the file cannot be used, why (then no key is accepted).
        self._state: tuple[dict[str, Caller], str | None] = ({}, None)
        try:
            self._version, keys = self._read()
        except (OSError, ValueError, RecursionError, ConfigError) as error:
            raise ConfigError(f"API_KEYS_FILE {self.path} cannot be read: {error}") from None
        self._state = (keys, None)

    def _read(self) -> tuple[tuple, dict[str, Caller]]:
        stat = self.path.stat()
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        entries = json.loads(self.path.read_text())
        return version, parse_api_keys(entries, source=str(self.path))

    def find(self, key: str) -> Caller | None:
        """Return the caller a presented key stands for, or None (503: the file is unusable)."""
        self._reload_if_changed()
        keys, problem = self._state
        if problem is not None:
            raise ApiError(
                503,
                "API keys cannot be checked right now; try again shortly.",
                headers={"Retry-After": str(KEYS_UNUSABLE_RETRY_AFTER_SECONDS)},
            )
        return keys.get(hashlib.sha256(key.encode()).hexdigest())

    def health(self) -> dict[str, Any]:
        """Report the file's state for ``/health``: ``ok`` with the number of keys, or why not."""
        self._reload_if_changed()
        keys, problem = self._state
        if problem is not None:
            return {"status": "unavailable", "error": problem}
        return {"status": "ok", "keys": len(keys)}

    def _reload_if_changed(self) -> None:
        if time.monotonic() - self._checked_at < KEYS_FILE_CHECK_SECONDS:
            return
        with self._lock:
            if time.monotonic() - self._checked_at < KEYS_FILE_CHECK_SECONDS:
                return  # another thread checked while this one waited
            self._checked_at = time.monotonic()
            try:
                stat = self.path.stat()
                version = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
                if version == self._version:
                    return
                self._version, keys = self._read()
            # Whatever the file holds, a failure to read it accepts no key (fails closed).
            except Exception as error:
                self._unusable(f"API_KEYS_FILE {self.path} cannot be read: {error}")
                return
            recovered = self._state[1] is not None
            self._state = (keys, None)
            log.info("API keys %s from %s", "usable again" if recovered else "reloaded", self.path)

    def _unusable(self, problem: str) -> None:
        if problem != self._state[1]:
            log.error("%s; no API key is accepted until it is fixed", problem)
        self._state = ({}, problem)
        self._version = None  # whatever the file becomes next is read again


def parse_api_keys(entries: Any, *, source: str) -> dict[str, Caller]:
    """Validate the keys file's entries; return callers by key hash, or raise ConfigError."""
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: expected a JSON list of keys")
    by_hash = {}
    # A key's name is its identity: it scopes its Idempotency-Keys. Entries sharing a name
    # (the old and new key of a rotation) must be one principal, bound to the same user.
    email_of_name: dict[str, str | None] = {}
    for number, entry in enumerate(entries, 1):
        where = f"{source}: key {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: needs a name")
        digest = entry.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and _is_hex(digest)):
            raise ConfigError(f"{where} ({entry['name']}): sha256 must be 64 hex digits")
        scopes = entry.get("scopes")
        if not (isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)) or not (
            set(scopes) <= set(SCOPES)
        ):
            raise ConfigError(f"{where} ({entry['name']}): scopes must be a list of {SCOPES}")
        email = entry.get("email")
        if email is not None:
            try:
                email = _bound_email(email)
            except ValueError as error:
                raise ConfigError(f"{where} ({entry['name']}): email {error}") from None
        if digest.lower() in by_hash:
            raise ConfigError(f"{where} ({entry['name']}): sha256 repeats an earlier key's")
        if email_of_name.setdefault(entry["name"], email) != email:
            raise ConfigError(
                f"{where} ({entry['name']}): an earlier key of this name binds another email; "
                "keys of different users need different names"
            )
        by_hash[digest.lower()] = Caller(
            name=f"key:{entry['name']}",
            scopes=frozenset(scopes),
            email=email,
            identity=_identity_hash(f"key:{entry['name']}"),
            service=email is None,
        )
    return by_hash


def _is_hex(value: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in value)


class BearerTokens:
    """Verifies JWTs against the issuer's JWKS (PyJWT's client caches the keys)."""

    def __init__(self, *, jwks_url: str, issuer: str, audience: str, email_claim: str):
        import jwt  # only processes that verify tokens load PyJWT and cryptography

        self._jwt = jwt
        self.issuer = issuer
        self.audience = audience
        self.email_claim = email_claim
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=JWKS_CACHE_SECONDS,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=JWKS_REFRESH_COOLDOWN_SECONDS,
        )
        # token -> (caller, until when it may be trusted without checking it again)
        self._verified: dict[str, tuple[Caller, float]] = {}
        self._verified_lock = threading.Lock()
        # The last time the issuer's keys were asked for, whatever came of it, and whether
        # that failed: PyJWT's own cooldown counts only fetches that worked.
        self._refresh_lock = threading.Lock()
        self._refreshed_at = -JWKS_REFRESH_COOLDOWN_SECONDS
        self._refresh_failed = False

    def verify(self, token: str) -> Caller:
        """Return the caller of a valid token; raise a 401 (or 503 if the JWKS is unreachable)."""
        with self._verified_lock:
            caller, until = self._verified.get(token, (None, 0.0))
        if caller is not None and time.time() < until:
            return caller
        caller, expires = self._check(token)
        until = min(expires, time.time() + VERIFIED_TOKEN_SECONDS)
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_TOKENS_MAX:
                self._verified.pop(next(iter(self._verified)))  # the oldest
            self._verified[token] = (caller, until)
        return caller

    def _check(self, token: str) -> tuple[Caller, float]:
        """Verify a token's signature and claims; return its caller and its expiry."""
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ASYMMETRIC_ALGORITHMS:
                raise unauthorized("The bearer token is not signed with an accepted algorithm.")
            key = self._signing_key(header.get("kid"))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(ASYMMETRIC_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError:
            log.warning("the issuer's keys cannot be fetched; bearer tokens cannot be checked")
            raise ApiError(
                503,
                "Bearer tokens cannot be checked right now; try again shortly.",
                headers={"Retry-After": "5"},
            ) from None
        except (jwt.PyJWTError, ValueError) as error:
            raise unauthorized(f"The bearer token is not valid: {error}.") from None
        return self._caller(claims), float(claims["exp"])

    def _signing_key(self, kid: Any):
        """Return the issuer's key named ``kid``: cached, else fetched at most once a cooldown.

        A key the cache holds is found without waiting for anything. Otherwise one
        request at a time asks the issuer, and none within the cooldown after the last
        ask ended, whether it worked or not: tokens naming made-up key ids cannot make
        the service call the issuer per request, and a request waits for one ask at most.
        """
        if not isinstance(kid, str):
            raise unauthorized("The bearer token names no key.")
        key = self._cached_key(kid)
        if key is not None:
            return key
        with self._refresh_lock:
            key = self._cached_key(kid)  # another request may have fetched the keys meanwhile
            if key is not None:
                return key
            if time.monotonic() - self._refreshed_at < JWKS_REFRESH_COOLDOWN_SECONDS:
                if self._refresh_failed:
                    raise self._jwt.PyJWKClientConnectionError("fetched within the cooldown")
                raise unauthorized("The bearer token names a key its issuer does not publish.")
            try:
                self._refresh_failed = False
                keys = self._keys.get_signing_keys(refresh=True)
            except self._jwt.PyJWKClientConnectionError:
                self._refresh_failed = True
                raise
            finally:
                # From the end of the ask: those queued behind an issuer that hung are
                # answered at once, not each after a timeout of its own.
                self._refreshed_at = time.monotonic()
        key = self._keys.match_kid(keys, kid)
        if key is None:
            raise unauthorized("The bearer token names a key its issuer does not publish.")
        return key

    def _cached_key(self, kid: str):
        cached = self._keys.jwk_set_cache.get()  # None once expired
        for key in cached.keys if cached is not None else ():
            if key.key_id == kid and key.public_key_use in ("sig", None):
                return key
        return None

    def _caller(self, claims: Mapping[str, Any]) -> Caller:
        """Return the caller a verified token stands for: its scopes, its user if it names one."""
        scope = claims.get("scope", "")
        granted = frozenset(scope.split()) & set(SCOPES) if isinstance(scope, str) else frozenset()
        email = claims.get(self.email_claim)
        if email is not None:
            try:
                email = _bound_email(email)
            except ValueError as error:
                raise unauthorized(
                    f"The bearer token's {self.email_claim} claim is not a valid email: {error}"
                ) from None
            if not email_is_verified(claims):
                email = None
        subject = f"jwt:{claims['iss']}|{claims['sub']}"
        return Caller(
            name=f"jwt:{_identity_hash(subject)[:12]}",
            scopes=granted,
            email=email,
            identity=_identity_hash(subject),
        )


def looks_like_jwt(token: str) -> bool:
    """Tell a JWT (three dot-separated parts) from an API key (generated keys have no dots)."""
    return token.count(".") == 2


def email_is_verified(claims: Mapping[str, Any]) -> bool:
    """Tell whether a token's email may be trusted: unless its issuer says it is unverified.

    Access tokens often carry no ``email_verified`` at all; an issuer that
    includes it says ``true`` (some send the string ``"true"``). Any other
    value, ``false`` included, leaves the email unverified.
    """
    verified = claims.get("email_verified", True)
    return verified is True or verified == "true"


class Authenticator:
    """Turns a request's credential into a :class:`Caller` (one per app)."""

    def __init__(self, config: Mapping[str, Any]):
        keys_file, jwks_url = config["API_KEYS_FILE"], config["JWT_JWKS_URL"]
        self.keys = ApiKeys(keys_file) if keys_file else None
        self.tokens = (
            BearerTokens(
                jwks_url=jwks_url,
                issuer=config["JWT_ISSUER"],
                audience=config["JWT_AUDIENCE"],
                email_claim=config["JWT_EMAIL_CLAIM"],
            )
            if jwks_url
            else None
        )

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """Return the request's caller, or raise the 401 (503 when tokens cannot be checked)."""
        key = headers.get(API_KEY_HEADER)
        if key is not None:
            caller = self.keys.find(key) if self.keys is not None else None
            if caller is None:
                raise unauthorized("The API key is not valid.")
            return caller
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and not looks_like_jwt(token):
            # An API key presented as a bearer token: what a scraper such as Prometheus
            # can send (it sets no custom header). Checked exactly as in X-API-Key.
            return self.authenticate({API_KEY_HEADER: token})
        if scheme.lower() == "bearer" and token:
            if self.tokens is None:
                raise unauthorized("Bearer tokens are not accepted here; use an API key.")
            return self.tokens.verify(token)
        raise unauthorized(f"A credential is required: an {API_KEY_HEADER} or a bearer token.")


def api_keys_health(app: Flask) -> dict[str, Any] | None:
    """Report the state of the app's API keys file for ``/health`` (None: it has none)."""
    authenticator = app.extensions.get("authenticator")
    if authenticator is None or authenticator.keys is None:
        return None
    return authenticator.keys.health()


# Answered to anyone: liveness probes carry no credential.
PUBLIC_PATHS = frozenset({"/ping"})


def install(app: Flask) -> None:
    """With ``AUTH_MODE=on``, authenticate every request before its view runs."""
    if app.config["AUTH_MODE"] != "on":
        return
    authenticator = Authenticator(app.config)
    app.extensions["authenticator"] = authenticator

    @app.before_request
    def authenticate():
        if request.path in PUBLIC_PATHS:
            return
        g.caller = authenticator.authenticate(request.headers)
