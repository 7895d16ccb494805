"""A gRPC server bounds the calls it holds; a client takes "too busy" for "cannot answer now"."""

import threading

import grpc
import pytest
from flask import Flask

from common.observability.metrics import GRPC_SERVER_CALLS
from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.peers import PeerError, UserDirectory
from common.rpc.server import CALLS_PER_WORKER, AppServicer, GrpcServer
from common.settings import GrpcSecurity
from devstack.stack import free_port
from tests.utils import wait_until

WORKERS = 2
BOUND = WORKERS * CALLS_PER_WORKER


class StuckUserService(AppServicer, stubs.UserServiceServicer):
    """Answers about ``held…`` addresses only once released, as if its database hung."""

    SERVICE = "UserService"
    released = threading.Event()

    def CheckUserExists(self, request, context):  # noqa: N802 (the .proto's name)
        if request.email.startswith("held"):
            self.released.wait(timeout=30)
        return messages.UserResponse(exists=True)


@pytest.fixture
def stuck_server():
    app = Flask(__name__)
    port = free_port()
    app.config.update(
        GRPC_SECURITY=GrpcSecurity(),
        GRPC_WORKERS=WORKERS,
        GRPC_BIND_HOST="127.0.0.1",
        GRPC_PORT=port,
    )
    StuckUserService.released = threading.Event()
    server = GrpcServer(app, StuckUserService)
    server.start()
    yield StuckUserService, server, f"127.0.0.1:{port}"
    StuckUserService.released.set()
    server.stop()


def active_calls(server: GrpcServer) -> int:
    """Return the calls the server counts toward its bound (grpcio shows it nowhere public)."""
    return server.server._state.active_rpc_count


def test_calls_beyond_the_bound_are_refused_at_once_and_the_rest_are_served(stuck_server):
    service, server, address = stuck_server
    directory = UserDirectory(address, timeout=2)
    assert directory.check_user_exists("free@example.com") is True  # connected and healthy
    # A call (and the health Watch that opened the connection) still counts toward the bound
    # for a moment after the client has its answer: the server counts it off only once the
    # handler's thread is done. Without this wait, a loaded machine refuses one or two more.
    wait_until(lambda: active_calls(server) == 0)
    with grpc.insecure_channel(address) as channel:
        stub = stubs.UserServiceStub(channel)
        calls = [
            stub.CheckUserExists.future(messages.UserRequest(email=f"held{n}@x.com"), timeout=20)
            for n in range(BOUND + 3)
        ]
        # Held calls answer only once released: the ones done by then were refused.
        wait_until(lambda: sum(call.done() for call in calls) == 3)
        refused = [call for call in calls if call.done()]
        assert {call.code() for call in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}

        # The typed client retries (on another replica, if there were one), then reports
        # "cannot answer now": a 503 to its own client, a later retry for the outbox.
        with pytest.raises(PeerError) as busy:
            directory.check_user_exists("free@example.com")
        assert busy.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert busy.value.unavailable

        service.released.set()
        held = [call for call in calls if call not in refused]
        assert len(held) == BOUND
        assert all(call.result().exists for call in held)
    assert directory.check_user_exists("free@example.com") is True
    assert UserDirectory(address, timeout=2).check_user_exists("free@example.com") is True


def test_methods_nobody_serves_share_one_label_in_the_metrics():
    """A caller chooses the method's name: each new one must not be a new series to keep."""
    app = Flask(__name__)
    port = free_port()
    app.config.update(
        GRPC_SECURITY=GrpcSecurity(token="t" * 32),
        GRPC_WORKERS=WORKERS,
        GRPC_BIND_HOST="127.0.0.1",
        GRPC_PORT=port,
    )
    server = GrpcServer(app, StuckUserService)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for n in range(20):
                made_up = channel.unary_unary(f"/made.up.Service/Method{n}")
                with pytest.raises(grpc.RpcError) as refused:
                    made_up(b"", timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop()
    labels = {
        sample.labels["method"]
        for metric in GRPC_SERVER_CALLS.collect()
        for sample in metric.samples
    }
    assert not any("made.up" in label for label in labels), labels
    assert "unknown" in labels
