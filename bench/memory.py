"""The memory of every process of a running stack: resident (RSS) and proportional (PSS).

RSS counts every page a process maps, so a page shared by several processes
(PostgreSQL's shared buffers, which every backend maps; what a gunicorn
worker shares with its master since the fork; the shared libraries) is
counted once per process, and a sum of RSS overstates what the stack takes.
PSS (``/proc/<pid>/smaps_rollup``) divides each shared page between the
processes that map it: the sum is the memory the stack really holds, and
the memory target is judged on it. Both are reported.

The stack is the one ``make run`` starts: PostgreSQL (the postmaster, its
background processes and one backend per open connection), nats-server,
the mail catcher and every service's processes (launcher, gunicorn master,
web workers, the process of the other roles). The OpenSky simulator, which
``make run`` starts only with ``--simulator``, is listed apart and left out
of the total.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.processes import _role
from devstack.stack import SERVICES

MB = 1024 * 1024
# Components of the bench's stack that ``make run`` does not start by default.
NOT_IN_MAKE_RUN = ("opensky_sim",)


@dataclass(frozen=True)
class StackProcess:
    """One process of the stack: what it belongs to and what it does there."""

    component: str
    role: str
    pid: int


@dataclass(frozen=True)
class Memory:
    """One process's memory, in MB."""

    component: str
    role: str
    pid: int
    rss: float
    pss: float


def _postgres_role(process: psutil.Process, postmaster: int) -> str:
    """Name a PostgreSQL process: a backend by its database, the others by their job."""
    if process.pid == postmaster:
        return "postmaster"
    words = " ".join(process.cmdline()).removeprefix("postgres:").split()
    # A backend's title is "<user> <database> <client address(port)> <state>".
    if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
        return f"backend ({words[1]})"
    return " ".join(word for word in words if not word.isdigit()) or "background"


def stack_processes(stack) -> list[StackProcess]:
    """Every process of ``stack`` (a devstack ``LocalStack``), PostgreSQL's included."""
    found: list[StackProcess] = []
    for name, child in list(stack.supervisor.children.items()):
        with contextlib.suppress(psutil.NoSuchProcess):
            launcher = psutil.Process(child.pid)
            for process in [launcher, *launcher.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    role = _role(process, name) if name in SERVICES else "server"
                    found.append(StackProcess(name, role, process.pid))
    if stack.postgres is not None:
        pid_file = Path(stack.postgres.pgdata) / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        with contextlib.suppress(psutil.NoSuchProcess):
            server = psutil.Process(postmaster)
            for process in [server, *server.children()]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    role = _postgres_role(process, postmaster)
                    found.append(StackProcess("postgresql", role, process.pid))
    return found


def rss_and_pss(pid: int) -> tuple[float, float]:
    """Return a process's RSS and PSS in MB (``smaps_rollup``: one cheap read)."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0]) * 1024 / MB
    return values["Rss"], values["Pss"]


def measure(stack) -> list[Memory]:
    """Return the memory of every process of ``stack`` now."""
    rows = []
    for process in stack_processes(stack):
        try:
            rss, pss = rss_and_pss(process.pid)
        except (OSError, KeyError):
            continue  # gone meanwhile
        rows.append(Memory(process.component, process.role, process.pid, rss, pss))
    return sorted(rows, key=lambda row: (row.component, row.role, row.pid))
