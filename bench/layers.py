"""The layers a deployment adds in front of the same code: authentication, and the gateway.

:func:`secured_services` starts a second web front of each service on the
benchmark's stack, with ``AUTH_MODE=on``: the same databases, gRPC peers and
data, so that a scenario measured through it and through the stack's own
web front differ by the authentication alone. Callers present an API key
(its SHA-256 in a keys file written here) or a JWT signed by an RSA key made
here and published as a JWKS by :class:`KeySet`, served from this process as
an identity provider would. Both credentials are service accounts with every
scope, so the routes do the same work as without authentication (full IBANs,
every user listed).

The gateway (nginx in the compose stack) needs a Docker engine and a
``gateway`` service in ``docker-compose.yml``: :func:`gateway_unavailable`
says why it cannot be measured here, or ``None``.
"""

import contextlib
import hashlib
import json
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.web.auth import SCOPES
from devstack.stack import REPO_ROOT, LocalStack, free_port

ISSUER = "https://idp.bench.flight-tracker.test"
AUDIENCE = "flight-tracker-api"
# Longer than any benchmark run: an expired token would turn every request into a 401.
TOKEN_LIFETIME_SECONDS = 6 * 3600


class KeySet:
    """An RSA signing key, its JWKS served over HTTP on loopback, and tokens it signs."""

    def __init__(self):
        self.kid = uuid.uuid4().hex
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"

    def token(self) -> str:
        """Sign a valid token of a service account holding every scope."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "bench",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "scope": " ".join(sorted(SCOPES)),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def close(self) -> None:
        """Stop serving the JWKS."""
        self.server.shutdown()


@dataclass(frozen=True)
class Secured:
    """Where the secured web fronts listen, and the headers of each kind of credential."""

    user_manager_url: str
    data_collector_url: str
    credentials: dict[str, dict[str, str]]


@contextlib.contextmanager
def secured_services(stack: LocalStack, directory: Path) -> Iterator[Secured]:
    """Serve both services' web role again with ``AUTH_MODE=on``, on ports of their own.

    Only the web role: the stack's gRPC servers and worker go on serving
    both fronts, so nothing runs twice (no second collector scheduling cycles).
    """
    api_key = secrets.token_urlsafe(32)
    keys_file = directory / "bench-api-keys.json"
    entry = {"name": "bench", "sha256": hashlib.sha256(api_key.encode()).hexdigest()}
    keys_file.write_text(json.dumps([{**entry, "scopes": sorted(SCOPES)}]))
    key_set = KeySet()
    ports = {"user_manager": free_port(), "data_collector": free_port()}
    env = dict(
        stack.env,
        AUTH_MODE="on",
        API_KEYS_FILE=str(keys_file),
        JWT_JWKS_URL=key_set.url,
        JWT_ISSUER=ISSUER,
        JWT_AUDIENCE=AUDIENCE,
        USER_MANAGER_HTTP_PORT=str(ports["user_manager"]),
        DATA_COLLECTOR_HTTP_PORT=str(ports["data_collector"]),
    )
    names = []
    try:
        for package in ports:
            name = f"{package}_secured"
            # Logged to a file like the stack's own processes: a terminal would slow them.
            command = [sys.executable, "-m", package, "web"]
            stack.supervisor.start(name, command, env=env, output=stack._log_file(name))
            names.append(name)
            stack._wait_for(name, f"http://127.0.0.1:{ports[package]}/ping")
        yield Secured(
            user_manager_url=f"http://127.0.0.1:{ports['user_manager']}",
            data_collector_url=f"http://127.0.0.1:{ports['data_collector']}",
            credentials={
                "API key": {"X-API-Key": api_key},
                "JWT": {"Authorization": f"Bearer {key_set.token()}"},
            },
        )
    finally:
        for name in reversed(names):
            stack.supervisor.stop(name)
        key_set.close()


def gateway_unavailable(compose_file: Path = REPO_ROOT / "docker-compose.yml") -> str | None:
    """Say why the gateway cannot be measured here (no engine, no gateway service), or None."""
    try:
        engine = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "no Docker engine"
    if engine.returncode != 0:
        return "no Docker engine"
    # Read, not `docker compose config`: that refuses a file whose required settings
    # (`${VAR:?...}`) are unset here, which says nothing about the gateway.
    if not re.search(r"^  gateway:", compose_file.read_text(), re.MULTILINE):
        return f"no gateway service in {compose_file.name}"
    return None
