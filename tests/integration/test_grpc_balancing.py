"""gRPC calls between the services spread over the peer's replicas and ride over a lost one.

Three User Manager gRPC servers (``python -m user_manager grpc``) run on the
suite's database; the Data Collector's client, :class:`UserDirectory`, gets
one address naming all three (``ipv4:`` here; in compose and Kubernetes a
``dns:///`` name that resolves to every replica), exactly as the services
make it. Who served each call is read from the servers' access logs.
"""

import secrets
import time

import pytest

from common.rpc.peers import UserDirectory
from common.settings import GrpcSecurity
from tests.utils import GrpcServerProcess, create_user, wait_until

pytestmark = pytest.mark.local_stack

TOKEN = secrets.token_urlsafe(32)
REPLICAS = 3
CALLS = 60
# Fewer server threads than health watches: a watch that held a thread would starve calls.
SERVER_THREADS = 2
EXTRA_CHANNELS = 4
SERVED = "UserService/CheckUserExists OK"


@pytest.fixture
def replicas(local_stack, tmp_path):
    """Three User Manager gRPC servers with the token, two threads each."""
    servers = []
    try:
        for number in range(REPLICAS):
            servers.append(
                GrpcServerProcess(
                    "user_manager",
                    local_stack,
                    {"GRPC_AUTH_TOKEN": TOKEN, "GRPC_WORKERS": str(SERVER_THREADS)},
                    tmp_path / f"grpc-{number}.log",
                )
            )
        yield servers
    finally:
        for server in servers:
            server.stop()


def directory_of(servers) -> UserDirectory:
    """The collector's client of the User Manager, given every replica's address."""
    address = "ipv4:" + ",".join(server.address for server in servers)
    return UserDirectory(address, timeout=2, security=GrpcSecurity(token=TOKEN))


def served_counts(servers) -> list[int]:
    return [server.log_text().count(SERVED) for server in servers]


def test_calls_spread_over_every_replica_and_survive_one_killed(replicas, um):
    email = create_user(um)
    # Other processes' channels, each watching every replica's health on its connection.
    others = [directory_of(replicas) for _ in range(EXTRA_CHANNELS)]
    for other in others:
        assert other.check_user_exists(email) is True
    directory = directory_of(replicas)
    assert directory.check_user_exists(email) is True
    # Round-robin starts with the replicas connected so far: let every connection come up.
    time.sleep(1)
    before = served_counts(replicas)
    for _ in range(CALLS):
        assert directory.check_user_exists(email) is True
    spread = [after - start for after, start in zip(served_counts(replicas), before, strict=True)]
    assert sum(spread) == CALLS
    assert min(spread) >= CALLS // REPLICAS // 2, f"calls per replica: {spread}"

    lost, *kept = replicas
    lost.kill()
    before = served_counts(kept)
    started = time.monotonic()
    for _ in range(CALLS):
        # Every call answers: the retry policy and health checking route around the dead one.
        assert directory.check_user_exists(email) is True
    elapsed = time.monotonic() - started
    spread = [after - start for after, start in zip(served_counts(kept), before, strict=True)]
    assert sum(spread) == CALLS and min(spread) > 0, f"calls per surviving replica: {spread}"
    assert elapsed < CALLS * 0.1, f"{CALLS} calls took {elapsed:.1f}s after the loss"


def test_a_replica_that_comes_back_gets_calls_again(replicas, um, local_stack, tmp_path):
    email = create_user(um)
    directory = directory_of(replicas)
    assert directory.check_user_exists(email) is True
    lost = replicas[0]
    lost.kill()
    for _ in range(10):
        assert directory.check_user_exists(email) is True
    # The same address again, as a restarted container or pod would have.
    back = GrpcServerProcess(
        "user_manager",
        local_stack,
        {"GRPC_AUTH_TOKEN": TOKEN, "GRPC_WORKERS": str(SERVER_THREADS)},
        tmp_path / "grpc-back.log",
        port=lost.port,
    )
    replicas[0] = back

    def back_serves() -> bool:
        for _ in range(REPLICAS):
            directory.check_user_exists(email)
        return back.log_text().count(SERVED) > 0

    wait_until(back_serves, timeout=15, interval=0.2)
