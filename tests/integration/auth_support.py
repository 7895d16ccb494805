"""A stack with ``AUTH_MODE=on``, its API keys, and a test identity provider that signs JWTs.

The identity provider is a JWKS endpoint served by this process, with RSA
keys generated here: tokens are minted for each case (valid, expired, another
audience, signed by a key the JWKS does not hold, ...). API keys are random
per run; only their SHA-256 goes into the stack's keys file.
"""

import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.web.auth import SCOPES

ISSUER = "https://idp.flight-tracker.test"
AUDIENCE = "flight-tracker-api"
# A user every bound credential acts for; tests pick other emails for "another user".
BOUND_EMAIL = "bound.user@example.com"


def signing_key() -> rsa.RSAPrivateKey:
    """A fresh RSA key (2048 bits: fast enough to make several per run)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class IdentityProvider:
    """Publishes a JWKS over HTTP and signs tokens with its keys (or others, for failures)."""

    def __init__(self):
        self.kid = uuid.uuid4().hex
        self.keys = {self.kid: signing_key()}
        self.published = {self.kid}
        self.reachable = True
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.fetches += 1
                if not provider.reachable or self.path != "/jwks.json":
                    self.send_error(503 if not provider.reachable else 404)
                    return
                body = json.dumps({"keys": provider.jwks()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.jwks_url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"

    def jwks(self) -> list[dict]:
        """The published public keys, as JWKs."""
        keys = []
        for kid in sorted(self.published):
            jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return keys

    def add_key(self, *, publish: bool) -> str:
        """Make a new signing key (published in the JWKS or not yet); return its kid."""
        kid = uuid.uuid4().hex
        self.keys[kid] = signing_key()
        if publish:
            self.published.add(kid)
        return kid

    def token(
        self,
        scopes=(),
        *,
        email: str | None = None,
        kid: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        lifetime: int = 300,
        not_before: int = 0,
        **claims,
    ) -> str:
        """A signed JWT; defaults are a valid token of this provider for these services."""
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{uuid.uuid4().hex[:8]}",
            "iat": now,
            "nbf": now + not_before,
            "exp": now + lifetime,
            "scope": " ".join(scopes),
            **claims,
        }
        if email is not None:
            payload["email"] = email
        kid = kid or self.kid
        return jwt.encode(payload, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        """Stop serving the JWKS."""
        self.server.shutdown()


@dataclass
class ApiKeys:
    """Random API keys by name, and the file (hashes only) the stack reads."""

    path: Path
    keys: dict[str, str] = field(default_factory=dict)
    entries: list[dict] = field(default_factory=list)

    def add(self, name: str, scopes, email: str | None = None) -> str:
        """Make a key with these scopes (bound to ``email`` if given); return it."""
        key = secrets.token_urlsafe(24)
        entry = {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()}
        entry["scopes"] = sorted(scopes)
        if email is not None:
            entry["email"] = email
        self.keys[name] = key
        self.entries.append(entry)
        self.path.write_text(json.dumps(self.entries, indent=2))
        return key

    def header(self, name: str) -> dict[str, str]:
        """The request header presenting key ``name``."""
        return {"X-API-Key": self.keys[name]}


def standard_keys(path: Path) -> ApiKeys:
    """Keys for the authorization cases: every scope, every scope but one, bound, admin."""
    keys = ApiKeys(path)
    working = set(SCOPES) - {"admin"}
    keys.add("all", working)
    keys.add("none", [])
    for scope in working:
        keys.add(f"all-but-{scope}", working - {scope})
    keys.add("bound", working, email=BOUND_EMAIL)
    keys.add("bound-admin", set(SCOPES), email=BOUND_EMAIL)
    return keys


def bearer(token: str) -> dict[str, str]:
    """The request header presenting a bearer token."""
    return {"Authorization": f"Bearer {token}"}
