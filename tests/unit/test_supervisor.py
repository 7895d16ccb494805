"""The supervisor leaves no child behind, and starts children from any process safely."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent import futures

import grpc
import psutil
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.process.supervisor import Supervisor
from tests.utils import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_children_stop_when_the_supervisor_is_killed_with_sigkill():
    script = textwrap.dedent(
        f"""
        import sys
        from common.process.supervisor import Supervisor
        supervisor = Supervisor("test")
        child = supervisor.start("sleeper", {SLEEPER!r})
        print(child.pid, flush=True)
        supervisor.wait()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    wait_until(lambda: "sleep" in " ".join(child.cmdline()))  # exec'd: the pid is the command's

    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)

    wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)


def test_children_start_from_a_process_that_serves_and_calls_grpc():
    """Grpcio's fork handlers once deadlocked a fork() here; children must not depend on them."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    supervisor = Supervisor("test", grace_seconds=5)
    try:
        started = time.monotonic()
        for number in range(20):
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            supervisor.start(f"sleeper-{number}", SLEEPER)
        assert time.monotonic() - started < 30
        assert all(process.poll() is None for process in supervisor.children.values())
    finally:
        supervisor.stop_all()
        channel.close()
        server.stop(None)


def test_a_child_whose_supervisor_is_already_gone_does_not_start():
    done = subprocess.run(
        [sys.executable, "-m", "common.process.child", str(os.getpid() + 10**6), *SLEEPER],
        timeout=30,
    )
    assert done.returncode == 1
