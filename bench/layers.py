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

:func:`gateway_front` puts the compose stack's gateway in front of the
same stack: the ``gateway`` service's own nginx image and configuration
(``deploy/compose/gateway``), run by the local Docker engine on the host's
network, with the replicas' compose names replaced by the stack's loopback
ports. A scenario through it and through the stack's own ports then differ
by nginx's hop alone (buffering both ways, its access log, the headers it
adds). Compose's port publishing is not part of it: clients reach the
services through it with or without a gateway. :func:`gateway_unavailable`
says why it cannot be measured here (no engine, no image), or ``None``.
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
import psutil
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.web.auth import SCOPES
from devstack.stack import REPO_ROOT, LocalStack, free_port

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GATEWAY_TEMPLATES = REPO_ROOT / "deploy" / "compose" / "gateway"
# The gateway's per-client limits (GATEWAY_* in .env): the benchmark is one client at full
# speed, which they exist to refuse, and measures the hop's cost: every limit is lifted
# far above what it sends (the limits are still looked up for every request).
UNLIMITED = "1000000"

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

    @property
    def base(self) -> dict[str, str]:
        """The base URL of each service's secured front, by package name."""
        return {"user_manager": self.user_manager_url, "data_collector": self.data_collector_url}


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
            stack.supervisor.start(name, command, env=env, output=stack.log_file(name))
            names.append(name)
            stack.wait_for(name, f"http://127.0.0.1:{ports[package]}/ping")
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


def gateway_image(compose_file: Path = COMPOSE_FILE) -> str | None:
    """Return the image of the compose file's ``gateway`` service, or None without one.

    Read, not ``docker compose config``: that refuses a file whose required
    settings (``${VAR:?...}``) are unset here, which says nothing about the gateway.
    """
    text = compose_file.read_text()
    service = re.search(r"^  gateway:\n((?:    .*\n|\s*\n)*)", text, re.MULTILINE)
    if service is None:
        return None
    image = re.search(r"^    image: *(\S+)", service.group(1), re.MULTILINE)
    return image.group(1) if image else None


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def gateway_unavailable(compose_file: Path = COMPOSE_FILE) -> str | None:
    """Say why the gateway cannot be measured here (no engine, no gateway image), or None."""
    try:
        if _docker("info", timeout=20).returncode != 0:
            return "no Docker engine"
    except (OSError, subprocess.TimeoutExpired):
        return "no Docker engine"
    image = gateway_image(compose_file)
    if image is None:
        return f"no gateway service in {compose_file.name}"
    # Nothing is pulled: the run must not depend on reaching a registry.
    if _docker("image", "inspect", image).returncode != 0:
        return f"the image {image} is not on this engine (docker pull {image})"
    return None


def gateway_configuration(source: Path, target: Path, ports: dict[str, tuple[int, int]]) -> None:
    """Write the gateway's templates to ``target``, pointed at loopback ports.

    ``ports`` maps each compose service name to (the port the gateway listens
    on, the port of the stack's service). Every replacement must apply: a
    configuration that changed shape fails here rather than measuring
    something else.
    """
    target.mkdir(parents=True, exist_ok=True)
    for template in source.glob("*.template"):
        text = template.read_text()
        for name, (listen, upstream) in ports.items():
            internal = _compose_port(text, name)
            replacements = {
                f"listen {internal};": f"listen 127.0.0.1:{listen};",
                f"{name}:{internal};": f"127.0.0.1:{upstream};",
            }
            for old, new in replacements.items():
                if template.name == "default.conf.template" and old not in text:
                    raise RuntimeError(f"{template.name} has no {old!r}: update the bench")
                text = text.replace(old, new)
        (target / template.name).write_text(text)


def gateway_limits() -> list[str]:
    """Return the names of the limits the gateway's templates read (GATEWAY_*)."""
    names = set()
    for template in GATEWAY_TEMPLATES.glob("*.template"):
        names.update(re.findall(r"\$\{(GATEWAY_[A-Z0-9_]+)\}", template.read_text()))
    return sorted(names)


def _compose_port(text: str, name: str) -> int:
    """Return the port the gateway's configuration proxies compose service ``name`` to."""
    found = re.search(rf"\b{re.escape(name)}:(\d+);", text)
    return int(found.group(1)) if found else 0


@dataclass(frozen=True)
class Gateway:
    """Where the gateway in front of the bench stack listens, and the processes it costs."""

    base: dict[str, str]
    container: str

    def processes(self) -> list[psutil.Process]:
        """Return nginx's processes and the engine's that carry its log: its CPU, in full.

        The engine (dockerd, containerd and this container's shim) reads every
        access-log line nginx writes to its standard output, as it does in the
        compose stack.
        """
        inspected = _docker("inspect", "--format", "{{.State.Pid}}", self.container)
        found: list[psutil.Process] = []
        with contextlib.suppress(ValueError, psutil.Error):
            nginx = psutil.Process(int(inspected.stdout.strip()))
            found += [nginx, *nginx.children(recursive=True)]
            if nginx.parent() is not None:
                found.append(nginx.parent())
        for process in psutil.process_iter(["name"]):
            if process.info["name"] in ("dockerd", "containerd"):
                found.append(process)
        return found


@contextlib.contextmanager
def gateway_front(stack: LocalStack, directory: Path) -> Iterator[Gateway]:
    """Run the compose gateway in front of ``stack`` until the block ends."""
    image = gateway_image()
    ports = {
        "user-manager": (free_port(), stack.settings.user_manager_http_port),
        "data-collector": (free_port(), stack.settings.data_collector_http_port),
    }
    gateway_configuration(GATEWAY_TEMPLATES, directory / "templates", ports)
    name = f"flight-tracker-bench-gateway-{uuid.uuid4().hex[:8]}"
    started = _docker(
        "run", "--detach", "--rm", "--name", name, "--network", "host",
        "--volume", f"{directory / 'templates'}:/etc/nginx/templates:ro",
        # The ports of the next-page links it builds for a Host it does not trust.
        "--env", f"USER_MANAGER_HTTP_PORT={ports['user-manager'][0]}",
        "--env", f"DATA_COLLECTOR_HTTP_PORT={ports['data-collector'][0]}",
        *[arg for name in gateway_limits() for arg in ("--env", f"{name}={UNLIMITED}")],
        image,
    )  # fmt: skip
    if started.returncode != 0:
        raise RuntimeError(f"the gateway did not start: {started.stderr.strip()}")
    base = {
        "user_manager": f"http://127.0.0.1:{ports['user-manager'][0]}",
        "data_collector": f"http://127.0.0.1:{ports['data-collector'][0]}",
    }
    try:
        for url in base.values():
            _wait_for_ping(url, logs=lambda: _docker("logs", name).stderr[-2000:])
        yield Gateway(base, name)
    finally:
        _docker("rm", "--force", name)


def _wait_for_ping(url: str, *, logs, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the gateway at {url} did not answer within {timeout:.0f}s: {logs()}")
