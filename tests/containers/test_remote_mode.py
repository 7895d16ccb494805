"""The suite against a running stack (docker compose) needs nothing from this host but the URLs.

The README's command for containers is
``UM_URL=http://localhost:5001 DC_URL=http://localhost:5002 make test``. Here
the suite is run that way in a child pytest against the session's stack, and
must pass without starting a single process of its own.
"""

import contextlib
import os
import subprocess
import sys
import time

import psutil

from tests.containers.deployment import REPO_ROOT

# A fast sample of integration tests: plain API tests, and local-only ones that must skip.
SAMPLE = ["tests/integration/test_vertical_slice.py", "tests/integration/test_process_model.py"]


def run_pytest(env_changes: dict[str, str], args: list[str]) -> tuple[int, str, set[str]]:
    """Run pytest in a child; return its exit code, output and every process it started."""
    env = {k: v for k, v in os.environ.items() if k not in {"UM_URL", "DC_URL", "SIM_URL"}}
    env.update(env_changes)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started: set[str] = set()
    watched = psutil.Process(child.pid)
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):  # a process that ended while we looked
            started.update(" ".join(p.cmdline()) for p in watched.children(recursive=True))
        time.sleep(0.05)
    return child.returncode, child.stdout.read(), started


def test_suite_runs_against_given_urls_and_starts_nothing(stack):
    code, output, started = run_pytest(
        {"UM_URL": stack.user_manager_url, "DC_URL": stack.data_collector_url}, SAMPLE
    )
    assert code == 0, output
    assert "passed" in output and "skipped" in output, output
    assert not started, f"the suite started processes against a remote stack: {started}"


def test_half_a_remote_stack_is_refused():
    code, output, _ = run_pytest({"UM_URL": "http://localhost:5001"}, ["--collect-only"])
    assert code != 0
    assert "set both UM_URL and DC_URL" in output
