"""Exec a command that Linux stops when its supervisor dies: ``python -m common.process.child``.

A supervisor must never leave its children behind, even when it is killed
with SIGKILL. Linux offers ``PR_SET_PDEATHSIG``, but setting it between fork
and exec (``subprocess``'s ``preexec_fn``) runs Python in a forked copy of a
multi-threaded process and makes ``subprocess`` use ``fork`` instead of
``vfork``, which runs every library's fork handlers: grpcio's deadlocked the
test process inside ``fork()``. So children are started through this tiny
program instead: it asks for the signal, checks that the supervisor is still
its parent (it may have died before the request), then execs the command,
which keeps the setting (it is cleared only by set-user-id execs).

Usage: ``python -m common.process.child <supervisor pid> <command> [args...]``.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Ask for SIGTERM on the parent's death, then exec the command (never returns on success)."""
    if len(argv) < 3:
        print(
            "usage: python -m common.process.child <parent pid> <command> [args...]",
            file=sys.stderr,
        )
        return 2
    parent, command = int(argv[1]), argv[2:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        return 1  # the supervisor is gone already: start nothing it could not stop
    os.execvp(command[0], command)
    return 127  # execvp raises instead of returning; kept for the type checker


if __name__ == "__main__":
    sys.exit(main(sys.argv))
