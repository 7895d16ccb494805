"""gRPC between the services: the shared token, mutual TLS, and both together in a stack.

Every check runs against real servers (``python -m <service> grpc``, or a
whole local stack), never against a servicer in this process: what is
checked is what the processes enforce.
"""

import secrets
import tempfile
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.process import launcher
from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.security import open_channel
from common.settings import GrpcSecurity
from devstack.stack import GRPC_SERVICES, LocalStack, StackSettings
from tests.utils import (
    Api,
    GrpcServerProcess,
    create_user,
    new_key,
    unique_email,
    wait_until,
    write_test_certificates,
)
from user_manager.app import SERVICE as USER_MANAGER

pytestmark = pytest.mark.local_stack

TOKEN = secrets.token_urlsafe(32)
CALL_TIMEOUT = 5
STUBS = {"user_manager": stubs.UserServiceStub, "data_collector": stubs.DataCollectorServiceStub}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def service_call(package: str, channel: grpc.Channel, metadata=()):
    """Call the service's own RPC (CheckUserExists or DeleteUserInterests) for a new email."""
    request = messages.UserRequest(email=unique_email())
    stub = STUBS[package](channel)
    rpc = stub.CheckUserExists if package == "user_manager" else stub.DeleteUserInterests
    return rpc(request, timeout=CALL_TIMEOUT, metadata=metadata)


def health_check(channel: grpc.Channel, metadata=()) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT, metadata=metadata
    )
    return reply.status


def status_of(call) -> grpc.StatusCode:
    """Run ``call``; return OK, or the status it failed with."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def token_server(local_stack, tmp_path_factory):
    """The User Manager's gRPC server with GRPC_AUTH_TOKEN set, over plaintext."""
    log = tmp_path_factory.mktemp("grpc-token") / "grpc.log"
    server = GrpcServerProcess("user_manager", local_stack, {"GRPC_AUTH_TOKEN": TOKEN}, log)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        bearer("not-the-token"),
        bearer(TOKEN[:-1]),
        (("authorization", TOKEN),),  # the token without its scheme
        (("authorization", f"bearer {TOKEN}"),),
        (("x-token", f"Bearer {TOKEN}"),),
    ],
    ids=["none", "wrong", "truncated", "no-scheme", "lower-case-scheme", "other-header"],
)
def test_a_call_without_the_token_is_refused_unauthenticated(token_server, metadata):
    with grpc.insecure_channel(token_server.address) as channel:
        assert status_of(lambda: service_call("user_manager", channel, metadata)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        # The health service's other methods stay behind the token.
        health_list = health_pb2_grpc.HealthStub(channel).List
        assert status_of(
            lambda: health_list(
                health_pb2.HealthListRequest(), timeout=CALL_TIMEOUT, metadata=metadata
            )
        ) == (grpc.StatusCode.UNAUTHENTICATED)
    # Refused calls are logged (by the server process, once it has answered).
    wait_until(lambda: "UNAUTHENTICATED" in token_server.log.read_text())


def test_health_check_and_watch_need_no_token(token_server):
    """Client-side health checking (the peers' round-robin) watches without metadata."""
    with grpc.insecure_channel(token_server.address) as channel:
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT
        )
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()


def test_a_call_with_the_token_is_served(token_server, um):
    email = create_user(um)
    with grpc.insecure_channel(token_server.address) as channel:
        reply = stubs.UserServiceStub(channel).CheckUserExists(
            messages.UserRequest(email=email), timeout=CALL_TIMEOUT, metadata=bearer(TOKEN)
        )
        assert reply.exists is True
        assert health_check(channel, bearer(TOKEN)) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("email", ["a\x00b@example.com", "a@" + "e" * 300 + ".com"])
def test_an_email_no_stored_address_could_be_is_an_invalid_argument(
    token_server, local_stack, email
):
    """Not UNAVAILABLE, which callers retry and read as 'the database is down'."""
    request = messages.UserRequest(email=email)
    with grpc.insecure_channel(token_server.address) as channel:
        check = stubs.UserServiceStub(channel).CheckUserExists
        call = lambda: check(request, timeout=CALL_TIMEOUT, metadata=bearer(TOKEN))  # noqa: E731
        assert status_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    address = f"127.0.0.1:{grpc_ports(local_stack)['data_collector']}"
    with grpc.insecure_channel(address) as channel:
        delete = stubs.DataCollectorServiceStub(channel).DeleteUserInterests
        assert status_of(lambda: delete(request, timeout=CALL_TIMEOUT)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    assert "Traceback" not in token_server.log.read_text()


def test_the_container_health_check_passes_on_a_server_with_a_token(token_server, monkeypatch):
    for variable, value in token_server.env.items():
        monkeypatch.setenv(variable, value)
    assert launcher.main(USER_MANAGER, ["healthcheck", "grpc"]) == 0
    # Liveness says the server serves; whether a caller holds the token is the calls' concern.
    monkeypatch.setenv("GRPC_AUTH_TOKEN", "not-the-token")
    assert launcher.main(USER_MANAGER, ["healthcheck", "grpc"]) == 0


# --- A whole stack with the token and mutual TLS --------------------------------------------


@pytest.fixture(scope="module")
def secured_stack():
    """A local stack whose gRPC is mutual TLS with the token (one worker per service)."""
    # Not pytest's tmp_path: PostgreSQL runs as another user and must reach its directory.
    with tempfile.TemporaryDirectory(prefix="flight-tracker-secured-") as tmp:
        base = Path(tmp)
        tls = write_test_certificates(base / "tls")
        settings = StackSettings.on_free_ports(
            base / "pg",
            simulator=True,
            services=GRPC_SERVICES,
            log_dir=base / "logs",
            extra_env={"GRPC_AUTH_TOKEN": TOKEN, "WEB_CONCURRENCY": "1", **tls},
        )
        stack = LocalStack(settings)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


def grpc_ports(stack: LocalStack) -> dict[str, int]:
    return {
        "user_manager": stack.settings.user_manager_grpc_port,
        "data_collector": stack.settings.data_collector_grpc_port,
    }


def test_the_services_talk_to_each_other_over_mutual_tls_with_the_token(secured_stack):
    um, dc = Api(secured_stack.user_manager_url), Api(secured_stack.data_collector_url)
    for api in (um, dc):
        health = api.get("/health").json()
        assert health["peer"]["status"] == "ok", health
    email = create_user(um)
    # The collector asks the User Manager (CheckUserExists) before adding an interest...
    added = dc.post("/interests", json={"email": email, "airport_code": "LIRF"})
    assert added.status_code == 201, added.text
    assert (
        dc.post("/interests", json={"email": unique_email(), "airport_code": "LIRF"}).status_code
        == 404
    )
    # ...and the User Manager tells the collector (DeleteUserInterests) when the user goes.
    assert um.delete(f"/users/{email}", headers=new_key()).status_code == 200
    wait_until(lambda: dc.get(f"/interests/{email}").json() == [])
    for role in ("user_manager", "data_collector"):
        assert "mutual TLS, token required" in secured_stack.log_text(role)


@pytest.mark.parametrize("package", sorted(STUBS))
def test_a_tls_client_with_the_ca_the_certificate_and_the_token_is_served(secured_stack, package):
    security = secured_stack.grpc_security()
    address = f"127.0.0.1:{grpc_ports(secured_stack)[package]}"
    with open_channel(address, security) as channel:
        assert health_check(channel, security.metadata) == health_pb2.HealthCheckResponse.SERVING
        assert status_of(lambda: service_call(package, channel, security.metadata)) == (
            grpc.StatusCode.OK
        )
        # TLS does not replace the token: both are required.
        assert status_of(lambda: service_call(package, channel)) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("package", sorted(STUBS))
def test_a_client_that_cannot_prove_itself_gets_no_connection(secured_stack, package, tmp_path):
    address = f"127.0.0.1:{grpc_ports(secured_stack)[package]}"
    right = secured_stack.grpc_security()
    other = write_test_certificates(tmp_path / "other-ca")
    strangers = {
        "plaintext": GrpcSecurity(token=TOKEN),
        "no client certificate": None,
        "a certificate of another CA": GrpcSecurity.load(
            token=TOKEN,
            certificate=other["GRPC_TLS_CERT"],
            private_key=other["GRPC_TLS_KEY"],
            ca=secured_stack.env["GRPC_TLS_CA"],
        ),
    }
    for what, security in strangers.items():
        if security is None:
            credentials = grpc.ssl_channel_credentials(root_certificates=right.ca)
            channel = grpc.secure_channel(address, credentials)
        else:
            channel = open_channel(address, security)
        with channel:
            status = status_of(lambda ch=channel: service_call(package, ch, bearer(TOKEN)))
            # Not even the health service, which needs no token: no connection, no answer.
            health = status_of(lambda ch=channel: health_check(ch))
        assert status == health == grpc.StatusCode.UNAVAILABLE, what


def test_a_client_refuses_a_server_its_ca_did_not_sign(secured_stack, tmp_path):
    other = write_test_certificates(tmp_path / "other-ca")
    security = GrpcSecurity.load(
        token=TOKEN,
        certificate=secured_stack.env["GRPC_TLS_CERT"],
        private_key=secured_stack.env["GRPC_TLS_KEY"],
        ca=other["GRPC_TLS_CA"],
    )
    address = f"127.0.0.1:{secured_stack.settings.user_manager_grpc_port}"
    with open_channel(address, security) as channel:
        assert status_of(lambda: health_check(channel, bearer(TOKEN))) == (
            grpc.StatusCode.UNAVAILABLE
        )
