"""Start child processes, forward shutdown signals to them, and leave none behind.

Used by each service's launcher (gunicorn + gRPC server + background worker
in one container) and by the local stack (NATS, the five services, the
mail catcher, Prometheus, the OpenSky simulator). Children are fresh
interpreters started with exec, so nothing fork-unsafe (grpcio, database
connections) crosses into them. If any child dies unexpectedly, the rest are
stopped and the supervisor exits non-zero, so that a container restart
policy or the developer sees it rather than a half-working service.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

log = logging.getLogger(__name__)

# How long children get to stop after SIGTERM before SIGKILL.
GRACE_SECONDS = 20.0


class Supervisor:
    """Own a set of named child processes for the lifetime of this process."""

    def __init__(self, name: str, *, grace_seconds: float = GRACE_SECONDS):
        self.name = name
        self.grace_seconds = grace_seconds
        self.children: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._stop_reason = ""

    def start(
        self,
        role: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        output: IO | None = None,
    ) -> subprocess.Popen:
        """Start ``argv`` as child ``role`` in its own session (terminal signals reach us only).

        ``output`` receives the child's stdout and stderr (default: ours).
        """
        # Through common.process.child, which makes the child die with us (its docstring
        # says why that is not done with preexec_fn); it execs argv, so the pid is argv's.
        process = subprocess.Popen(
            [sys.executable, "-m", "common.process.child", str(os.getpid()), *argv],
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        self.children[role] = process
        log.info("%s: started %s (pid %d)", self.name, role, process.pid)
        return process

    def run(
        self, role: str, argv: Sequence[str], *, env: dict[str, str] | None = None
    ) -> int | None:
        """Run ``argv`` to completion; return its exit code, or None if asked to stop first.

        A stop request (SIGTERM) while it runs stops it like any other child,
        so a container stopped during a long step (migrations waiting for the
        database) exits promptly and leaves nothing behind.
        """
        process = self.start(role, argv, env=env)
        while process.poll() is None:
            if self._stop.wait(0.2):
                log.info("%s: stopping (%s)", self.name, self._stop_reason)
                self.stop_all()
                return None
        del self.children[role]
        return process.returncode

    def install_signal_handlers(self) -> None:
        """Turn SIGTERM and SIGINT (Ctrl-C) into an orderly stop of every child."""

        def request_stop(signum, _frame):
            self.request_stop(f"received {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def request_stop(self, reason: str) -> None:
        """Ask :meth:`wait` to return and stop the children."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def wait(self) -> int:
        """Block until asked to stop or a child exits, then stop every child; return exit code."""
        exit_code = 0
        while not self._stop.wait(0.2):
            for role, process in self.children.items():
                code = process.poll()
                if code is not None:
                    log.error(
                        "%s: %s exited with code %s; stopping the rest", self.name, role, code
                    )
                    exit_code = 1
                    self.request_stop(f"{role} exited")
                    break
        log.info("%s: stopping (%s)", self.name, self._stop_reason)
        self.stop_all()
        return exit_code

    def stop(self, role: str) -> int | None:
        """Stop one child gracefully (SIGKILL after the grace period); return its exit code."""
        process = self.children.pop(role)
        _signal(process, signal.SIGTERM)
        try:
            return process.wait(timeout=self.grace_seconds)
        except subprocess.TimeoutExpired:
            log.warning("%s: %s did not stop in time; killing it", self.name, role)
            _signal(process, signal.SIGKILL)
            return process.wait()

    def stop_all(self) -> None:
        """SIGTERM every child, wait up to the grace period, then SIGKILL what is left."""
        for process in reversed(list(self.children.values())):
            if process.poll() is None:
                _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for role, process in reversed(list(self.children.items())):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s: %s did not stop in time; killing it", self.name, role)
                _signal(process, signal.SIGKILL)
                process.wait()
        self.children.clear()


def _signal(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signum)


def wait_for_stop_signal() -> str:
    """Block until SIGTERM or SIGINT; return the signal's name (for processes with no children)."""
    received = threading.Event()
    name = []

    def stop(signum, _frame):
        name.append(signal.Signals(signum).name)
        received.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    received.wait()
    log.info("received %s, stopping", name[0])
    return name[0]


def run_until_stopped(*roles) -> None:
    """Start ``roles`` (each with ``start()`` and ``stop()``), stop them on SIGTERM or SIGINT."""
    for role in roles:
        role.start()
    wait_for_stop_signal()
    for role in reversed(roles):
        role.stop()
