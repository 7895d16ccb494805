"""The load generator: wrk (closed loop, a fixed number of connections) driven by Lua scripts.

Each scenario script in ``bench/lua`` builds its requests; ``common.lua`` is
appended to every one and prints a ``BENCH_RESULT {json}`` line with counts,
errors and latency percentiles, which :func:`run` parses. Headers given to
:func:`run` (a credential) are added to every request a script builds. A
:class:`Background` load may be paced: each connection then waits a fixed
time between its requests (wrk's ``delay()``), a steady stream rather than
as many requests as the machine can answer.
"""

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"
# Two wrk threads: one per core of the machines this suite is written for.
WRK_THREADS = 2
RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """Return wrk's path, installing Debian's package when it is missing (and saying so)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: installing Debian's package (apt-get install -y wrk)", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk could not be installed; install it (Debian/Ubuntu: apt-get install wrk)")
    return found


def _command(
    url: str, script_path: str, args, *, connections: int, seconds: float, threads: int
) -> list[str]:
    return [
        ensure_wrk(),
        "--threads", str(min(threads, connections)),
        "--connections", str(connections),
        "--duration", f"{max(1, round(seconds))}s",
        "--timeout", "10s",
        "--script", script_path,
        url,
        "--",
        *args,
    ]  # fmt: skip


def _script(
    name: str, headers: dict[str, str] | None = None, *, pause_ms: int | None = None
) -> str:
    script = (LUA_DIR / f"{name}.lua").read_text() + "\n" + (LUA_DIR / "common.lua").read_text()
    if pause_ms is not None:
        script += f"\nfunction delay()\n   return {int(pause_ms)}\nend\n"
    if not headers:
        return script
    # JSON strings of these (ASCII) values are valid Lua strings.
    table = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    return (
        f"local bench_headers = {{{table}}}\n"
        "local bench_format = wrk.format\n"
        "wrk.format = function(method, path, headers, body)\n"
        "   headers = headers or {}\n"
        "   for name, value in pairs(bench_headers) do headers[name] = value end\n"
        "   return bench_format(method, path, headers, body)\n"
        "end\n" + script
    )


def _parse(output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    errors = sum(data[kind] for kind in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def run(
    url: str,
    script: str,
    *,
    args: list[str] = (),
    connections: int,
    seconds: float,
    threads: int = WRK_THREADS,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Run ``bench/lua/<script>.lua`` against ``url`` and return what wrk measured."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as combined:
        combined.write(_script(script, headers))
        combined.flush()
        command = _command(
            url, combined.name, args, connections=connections, seconds=seconds, threads=threads
        )
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return _parse(output)


class Background:
    """wrk running while the caller does something else; stopped (SIGINT) when the block ends.

    With ``seconds`` given, the block waits for wrk to finish instead. With
    ``pause_ms`` given, each connection waits that long between requests. The
    result is in ``.result`` afterwards.
    """

    # Longer than anything run in the background; SIGINT ends it earlier.
    UNTIL_STOPPED_SECONDS = 3600

    def __init__(
        self,
        url: str,
        script: str,
        *,
        args: list[str] = (),
        connections: int,
        seconds: float | None = None,
        pause_ms: int | None = None,
    ):
        self._script = tempfile.NamedTemporaryFile("w", suffix=".lua")  # noqa: SIM115
        self._script.write(_script(script, pause_ms=pause_ms))
        self._script.flush()
        self._command = _command(
            url,
            self._script.name,
            args,
            connections=connections,
            seconds=seconds or self.UNTIL_STOPPED_SECONDS,
            threads=WRK_THREADS,
        )
        self._until_stopped = seconds is None
        self._process: subprocess.Popen | None = None
        self.result: LoadResult | None = None

    def __enter__(self) -> "Background":
        self._process = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_exc) -> None:
        if self._until_stopped:
            # wrk stops its connections on SIGINT and still reports what it measured.
            self._process.send_signal(signal.SIGINT)
        output, _ = self._process.communicate()
        self._script.close()
        self.result = _parse(output)
