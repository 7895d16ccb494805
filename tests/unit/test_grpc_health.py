"""The gRPC health service keeps answering while clients' watches come and go."""

import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.rpc.health import NOT_SERVING, SERVICE_UNKNOWN, SERVING, HealthServicer
from tests.utils import wait_until

# Eight clients opening and ending watches for two seconds: grpcio-health-checking's own
# servicer stopped answering within that in every try on this machine.
CHURN_SECONDS = 2
CHURNING_CLIENTS = 8


@pytest.fixture
def served():
    """A server of the health service alone, on a free port: (servicer, address, server)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}", server
    server.stop(0)


def check(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def stop_gracefully(servicer: HealthServicer, server: grpc.Server) -> bool:
    """Stop as the service does; True when it finished within five seconds."""
    stopped = threading.Event()

    def stop():
        servicer.enter_graceful_shutdown()
        server.stop(1).wait()
        stopped.set()

    threading.Thread(target=stop, daemon=True).start()
    return stopped.wait(5)


def test_watches_ending_while_others_start_leave_the_server_answering(served):
    servicer, address, server = served
    until = time.monotonic() + CHURN_SECONDS

    def open_and_end_watches():
        while time.monotonic() < until:
            with grpc.insecure_channel(address) as channel:
                request = health_pb2.HealthCheckRequest()
                watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=5)
                assert next(watch).status in (SERVING, NOT_SERVING)
                watch.cancel()

    def change_the_status_meanwhile():
        while time.monotonic() < until:
            servicer.set("", NOT_SERVING)
            servicer.set("", SERVING)

    with futures.ThreadPoolExecutor(CHURNING_CLIENTS + 1) as clients:
        churning = [clients.submit(open_and_end_watches) for _ in range(CHURNING_CLIENTS)]
        for client in [*churning, clients.submit(change_the_status_meanwhile)]:
            client.result()
    assert check(address) == SERVING
    # Every watch has ended: the servicer holds on to none of them.
    wait_until(lambda: servicer.set("", SERVING) or not servicer._watchers, timeout=5)
    assert stop_gracefully(servicer, server)


def test_a_watcher_sees_every_change_in_order_until_the_shutdown(served):
    servicer, address, _ = served
    servicer.set("flights.Service", SERVING)
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="flights.Service")
        watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=5)
        assert next(watch).status == SERVING
        servicer.set("flights.Service", NOT_SERVING)
        servicer.set("flights.Service", SERVING)
        assert [next(watch).status, next(watch).status] == [NOT_SERVING, SERVING]
        servicer.enter_graceful_shutdown()
        assert next(watch).status == NOT_SERVING
        # Once shutting down, nothing sets it back.
        servicer.set("flights.Service", SERVING)
        assert check(address, "flights.Service") == NOT_SERVING


def test_a_service_never_set_is_not_found_by_check_and_unknown_to_watch(served):
    _, address, _ = served
    with pytest.raises(grpc.RpcError) as refused:
        check(address, "nobody.Service")
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="nobody.Service")
        watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=5)
        assert next(watch).status == SERVICE_UNKNOWN
        watch.cancel()
