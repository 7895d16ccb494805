"""Profile one scenario: wrk drives it while py-spy samples every web worker of the service.

``python -m bench.profile get_user`` starts a benchmark stack, seeds it,
loads the scenario for a few seconds and prints where the web workers spend
their time: the functions with the most samples on the stack (inclusive)
and at the top of it (self), over all workers together. ``--svg`` also
writes a flame graph per worker.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from bench import loadgen, seed
from bench.runner import FOR_USER_AIRPORTS, FOR_USER_INDEX, Bench, Options, bench_stack

SAMPLES_PER_SECOND = 250


def _web_workers(launcher_pid: int) -> list[int]:
    workers = []
    for process in psutil.Process(launcher_pid).children(recursive=True):
        parent = process.parent()
        if parent is not None and "gunicorn" in " ".join(parent.cmdline()):
            workers.append(process.pid)
    return workers


def _summarize(raw_files: list[Path], top: int) -> str:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for path in raw_files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            # A line cut short when py-spy stopped while writing has no count: skip it.
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            samples = int(count)
            total += samples
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
    lines = [f"{total} samples over {len(raw_files)} workers", "", "inclusive:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: scenario name, seconds, table size."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000, help="flights to seed")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--svg", type=Path, help="directory for flame graphs")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    options = Options(flight_rows=(args.rows,))
    with bench_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(stack, options)
        seed.seed_users(bench.um_db, count=options.users)
        if args.scenario.startswith("flights"):
            seed.seed_flights(bench.dc_db, first_row=0, rows=args.rows)
        if args.scenario == "flights_for_user":
            # As the run seeds it: without interests the route answers [] before any flight.
            seed.seed_interests(
                bench.dc_db, email=seed.seed_user_email(FOR_USER_INDEX), airports=FOR_USER_AIRPORTS
            )
        if args.scenario == "replay_user":
            bench.create_replay_users()
        url, script, script_args = bench.scenario(args.scenario)
        service = "user_manager" if url.startswith(stack.user_manager_url) else "data_collector"
        bench.wrk(url, script, script_args, seconds=2, headers=None)
        workers = _web_workers(bench.service_pids()[service])
        raw = [Path(tmp) / f"{pid}.txt" for pid in workers]
        # A run id of its own (create_user's keys must not replay the warm-up's), and pairs
        # after the warm-up's (add_interest).
        script_args = bench.fresh_args(script_args)
        load = loadgen.Background(url, script, args=script_args, connections=options.connections)
        with load:
            spies = [
                subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds),
                     "--rate", str(SAMPLES_PER_SECOND), "--format", "raw", "--output", str(path),
                     "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for pid, path in zip(workers, raw, strict=True)
            ]  # fmt: skip
            for spy in spies:
                spy.wait()
        print(f"{args.scenario}: {load.result.rate:.0f}/s while profiled (py-spy slows it)")
        print(_summarize([path for path in raw if path.exists()], args.top))
        if args.svg:
            args.svg.mkdir(parents=True, exist_ok=True)
            for path in raw:
                (args.svg / f"{args.scenario}-{path.stem}.txt").write_text(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
