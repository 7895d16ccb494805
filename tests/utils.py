"""Helpers shared by the test modules: HTTP clients, unique test data, polling."""

import fcntl
import functools
import importlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import pytest
import requests

from common.rpc.security import open_channel
from common.settings import GrpcSecurity

# Tests run statements on a service's database directly with the stack's helper.
from devstack.stack import SERVICES, LocalStack, free_port, run_sql, settings_class  # noqa: F401

# Long enough for a loaded CI machine, short enough to fail fast when broken.
DEFAULT_TIMEOUT = 10.0


class Api:
    """A tiny HTTP client for one service: ``api.get("/users")`` against its base URL."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Send a request; a timeout is always set so a hang fails the test."""
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        """POST ``path``."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        """PUT ``path``."""
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)


class AppResponse:
    """A Flask test response seen through the parts of ``requests.Response`` the tests use."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.get_data()
        self.text = response.get_data(as_text=True)
        self.ok = response.status_code < 400

    def json(self) -> Any:
        """Parse the body as JSON (raises ValueError when it is not)."""
        return json.loads(self.text)

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The ``Link`` header parsed as ``requests`` does: by ``rel``."""
        parsed = requests.utils.parse_header_links(self.headers.get("Link", ""))
        return {link.get("rel") or link["url"]: link for link in parsed if "url" in link}


class AppClient:
    """The :class:`Api` interface served in this process by Flask's test client.

    Route-level tests (validation, error shapes) need no gunicorn between
    them and the app, only the app and its real database: this runs the
    same requests without a network hop or a process boundary.
    """

    base_url = "http://localhost"

    def __init__(self, app):
        self.client = app.test_client()

    def request(self, method: str, path: str, **kwargs) -> AppResponse:
        """Send a request to the app; ``json``, ``headers``, ``params``, ``data`` as requests."""
        kwargs.pop("timeout", None)
        if path.startswith(self.base_url):
            path = path.removeprefix(self.base_url)
        headers = {
            name: value.decode("latin-1") if isinstance(value, bytes) else value
            for name, value in (kwargs.pop("headers", None) or {}).items()
        }
        response = self.client.open(
            path,
            method=method,
            json=kwargs.pop("json", None),
            headers=headers,
            query_string=kwargs.pop("params", None),
            data=kwargs.pop("data", None),
        )
        assert not kwargs, f"AppClient does not take {sorted(kwargs)}"
        return AppResponse(response)

    def get(self, path: str, **kwargs) -> AppResponse:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> AppResponse:
        """POST ``path``."""
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs) -> AppResponse:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)


def unique_email(prefix: str = "user") -> str:
    """Return an email no other test (or earlier run against the same stack) uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}@example.com"


def new_key() -> dict[str, str]:
    """Return headers with a fresh Idempotency-Key."""
    return {"Idempotency-Key": str(uuid.uuid4())}


def user_payload(email: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Return a valid ``POST /users`` body for a new user."""
    body = {
        "email": email or unique_email(),
        "first_name": "Mario",
        "last_name": "Rossi",
    }
    body.update(overrides)
    return body


def create_user(um: Api, email: str | None = None, **overrides: Any) -> str:
    """Create a user through the API and return the (normalized) email."""
    body = user_payload(email, **overrides)
    response = um.post("/users", json=body, headers=new_key())
    assert response.status_code == 201, response.text
    return response.json()["user"]["email"]


def wait_until(
    condition: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


def metric_value(metrics_text: str, name: str, **labels: str) -> float | None:
    """Return one sample's value from Prometheus text format (None when absent).

    ``labels`` must all match; other labels of the sample are ignored.
    """
    for line in metrics_text.splitlines():
        if line.startswith(name + " ") and not labels:
            return float(line.rsplit(" ", 1)[1])
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def metric(api: Api, name: str, **labels: str) -> float:
    """Return one sample's current value from ``api``'s ``/metrics`` (0 when absent)."""
    return metric_value(api.get("/metrics").text, name, **labels) or 0.0


def api_document(package: str, headers: dict | None = None, **environment: str) -> dict:
    """Build the OpenAPI document of ``package`` in this process, as its running app serves it.

    Building the app contacts no database, so an address nobody listens on
    stands in for the database URL when none is set. ``environment`` sets
    more variables (``AUTH_MODE="on"``, say) for this build only.
    """
    variables = [settings_class(service).DATABASE_URL_VARIABLE for service in SERVICES]
    placeholder = "postgresql://nobody@127.0.0.1:1/none"
    missing = {name: placeholder for name in variables if not os.environ.get(name)}
    with mock.patch.dict(os.environ, {**missing, **environment}):
        app = importlib.import_module(f"{package}.app").create_app()
        return app.test_client().get("/openapi.json", headers=headers).get_json()


def write_test_certificates(directory: Path) -> dict[str, str]:
    """Make a throw-away CA and one certificate it signs; return the GRPC_TLS_* settings.

    The certificate serves as server and as client certificate and names
    ``localhost`` and ``127.0.0.1``, where the tests' servers listen. Keys
    are generated here, per test run: no key material lives in the repository.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def builder(subject: str, issuer: str, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = f"flight-tracker test CA {uuid.uuid4().hex[:8]}"
    ca = (
        builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        builder("flight-tracker", ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "GRPC_TLS_CA": ("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "GRPC_TLS_CERT": ("cert.pem", certificate.public_bytes(serialization.Encoding.PEM)),
        "GRPC_TLS_KEY": (
            "key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    }
    settings = {}
    for variable, (filename, content) in files.items():
        path = directory / filename
        path.write_bytes(content)
        settings[variable] = str(path)
    return settings


class GrpcServerProcess:
    """One service's gRPC role (``python -m <service> grpc``) on the suite's database."""

    def __init__(
        self,
        package: str,
        stack: LocalStack,
        extra_env: dict[str, str],
        log: Path,
        *,
        port: int | None = None,
    ):
        self.port = port or free_port()
        self.env = {
            **stack.env,
            f"{package.upper()}_GRPC_PORT": str(self.port),
            "GRPC_BIND_HOST": "127.0.0.1",
            **extra_env,
        }
        self.log = log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", package, "grpc"],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        security = GrpcSecurity(token=extra_env.get("GRPC_AUTH_TOKEN"))
        with open_channel(self.address, security) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=60)
            except grpc.FutureTimeoutError:
                self.stop()
                raise AssertionError(f"gRPC server did not start:\n{log.read_text()}") from None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """End the server with SIGKILL: no graceful shutdown, as in a crash."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process the test started: SIGTERM, then SIGKILL if it lasts beyond ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def reconcile_interests(stack, *arguments: str) -> dict:
    """Run the Data Collector's interest reconciliation once, as ops would; return its result."""
    done = subprocess.run(
        [sys.executable, "-m", "data_collector.worker", "--reconcile", *arguments],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@functools.cache
def prometheus_missing() -> str | None:
    """Return why Prometheus cannot be used here, installing it first when possible (None: ok).

    Debian's ``prometheus`` package (``prometheus`` and ``promtool``) is
    installed once per session when it is missing and ``apt-get`` runs as root
    (CI does), quietly and without the recommended extras; elsewhere the tests
    that need it are skipped with this sentence.
    """
    if shutil.which("prometheus") and shutil.which("promtool"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return (
            "Prometheus is not installed (Debian/Ubuntu: apt-get install prometheus; "
            "elsewhere https://prometheus.io/download/), and only root may install it here"
        )
    # One test process installs; another (pytest-xdist) waits for it, then finds it there.
    with open(Path(tempfile.gettempdir()) / "flight-tracker-prometheus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if shutil.which("prometheus") and shutil.which("promtool"):
            return None
        print("\nPrometheus is not installed: installing Debian's package", file=sys.stderr)
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if shutil.which("prometheus") and shutil.which("promtool"):
        return None
    last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
    return f"Prometheus could not be installed (apt-get install prometheus: {last[0]})"


def require_prometheus() -> None:
    """Skip the calling test (or fixture) unless Prometheus is installed or installable."""
    reason = prometheus_missing()
    if reason is not None:
        pytest.skip(reason)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``promtool`` (skipping the test without Prometheus) and return what it did."""
    require_prometheus()
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
