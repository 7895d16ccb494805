"""``python -m bench``: the whole benchmark (``make bench``); ``--soak`` for the 5-minute soak."""

import argparse
import os
import sys

# As in the test suite: this process uses gRPC and then forks pg_ctl as another user, which
# grpcio's fork handlers can crash; the child execs at once and needs none of them.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from bench.runner import INGEST_AIRPORTS, Options, main_run


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny data, 1-second runs, 2 rounds (smoke)"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per measurement (5)")
    parser.add_argument(
        "--rounds", type=int, choices=range(1, len(INGEST_AIRPORTS) + 1), metavar="N",
        help=f"rounds of every scenario between its ceilings (3; at most {len(INGEST_AIRPORTS)})",
    )  # fmt: skip
    parser.add_argument(
        "--rows", help="flight table sizes to measure, comma-separated (1000000,5000000)"
    )
    parser.add_argument(
        "--only", choices=["alerts"],
        help="only the alert scenarios and the whole stack's memory (with --quick: tiny ones)",
    )  # fmt: skip
    parser.add_argument(
        "--soak", type=float, nargs="?", const=300.0, metavar="SECONDS",
        help="soak create_user at 64 connections instead (default 300 s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    options = Options.quick() if args.quick else Options()
    if args.seconds:
        options.seconds = args.seconds
    if args.rounds:
        options.rounds = args.rounds
    if args.rows:
        options.flight_rows = tuple(int(part) for part in args.rows.split(","))
    if args.only == "alerts":
        options.only_alerts = True
    if args.soak:
        options.soak_seconds = args.soak
    main_run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
