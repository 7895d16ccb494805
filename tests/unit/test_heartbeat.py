"""A worker's part that stops making progress fails the worker's probe; one that moves on does not.

The worker runs in a process of its own here, writing its heartbeats to a
metrics directory as a service's worker does (prometheus_client chooses its
multiprocess mode when imported, so it must be a new process); the probe
reads that directory.
"""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from common.observability import MULTIPROC_DIR_VARIABLE
from common.process.heartbeat import stalled_parts
from tests.utils import wait_until

# A worker with three jobs: one that returns at once, one that keeps calling progress()
# for as long as the test runs, and one that hangs in its first run (never calls it).
WORKER = textwrap.dedent(
    """
    import threading, time
    from flask import Flask
    from common.process.heartbeat import progress
    from common.process.scheduling import Jobs, PeriodicJob

    def moving():
        for _ in range(600):
            progress()
            time.sleep(0.1)

    jobs = [
        PeriodicJob("steady", lambda: None, 0.2, stall_seconds=1),
        PeriodicJob("moving", moving, 60, stall_seconds=1),
        PeriodicJob("hanging", threading.Event().wait, 60, stall_seconds=1),
    ]
    Jobs(Flask("worker"), jobs).start()
    print("started", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def worker(tmp_path):
    """The worker above, running with its metrics in ``tmp_path``."""
    env = {**os.environ, MULTIPROC_DIR_VARIABLE: str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "started"
        yield tmp_path
    finally:
        process.kill()
        process.wait()


def probe(metrics_dir) -> subprocess.CompletedProcess:
    """Run the worker's probe as a container would, with the service's metrics directory.

    ``metrics_dir`` None: the probe is not given the directory at all.
    """
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_DIR_VARIABLE}
    if metrics_dir is not None:
        env[MULTIPROC_DIR_VARIABLE] = str(metrics_dir)
    return subprocess.run(
        [sys.executable, "-m", "user_manager", "healthcheck", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_job_that_hangs_fails_the_probe_and_the_others_do_not(worker):
    started = time.time()
    # Within its first second every part is on time.
    assert stalled_parts(worker, now=started) == []

    stalled = wait_until(lambda: stalled_parts(worker), timeout=10)

    assert [line.split()[0] for line in stalled] == ["hanging"]
    assert "allowed 1s" in stalled[0]
    # Time passes well beyond the 1 s allowed: the job that keeps moving stays alive.
    time.sleep(1.5)
    assert [line.split()[0] for line in stalled_parts(worker)] == ["hanging"]
    result = probe(worker)
    assert result.returncode == 1
    assert "the worker is stuck: hanging made no progress" in result.stderr


def test_the_probe_fails_when_it_finds_no_heartbeat(tmp_path):
    result = probe(tmp_path)
    assert result.returncode == 1
    assert "no worker heartbeat" in result.stderr

    result = probe(None)
    assert result.returncode == 1
    assert f"{MULTIPROC_DIR_VARIABLE} is not set" in result.stderr
