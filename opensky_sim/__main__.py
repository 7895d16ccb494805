"""Command line entry point: ``python -m opensky_sim`` serves the simulator.

Prints one line with the URL once the socket is listening, so a parent process
(``make run``, a test) can read the real port when it asked for port 0, and
exits with code 0 on SIGINT or SIGTERM.
"""

import argparse
import signal
import sys
import threading

from werkzeug.serving import make_server

from opensky_sim.app import create_app
from opensky_sim.simulator import Settings
from opensky_sim.world import ALL_SEMANTICS


def parse_args(argv):
    """Read the CLI flags; defaults come from ``Settings`` so the two never disagree."""
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m opensky_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--density", type=float, default=defaults.density)
    parser.add_argument("--token-lifetime", type=int, default=defaults.token_lifetime)
    parser.add_argument("--anonymous-credits", type=int, default=defaults.anonymous_credits)
    parser.add_argument("--user-credits", type=int, default=defaults.user_credits)
    parser.add_argument("--all-semantics", choices=ALL_SEMANTICS, default=defaults.all_semantics)
    return parser.parse_args(argv)


def main(argv=None):
    """Serve until SIGINT or SIGTERM, then close the socket and return 0."""
    args = parse_args(argv)
    settings = Settings(
        client_id=args.client_id,
        client_secret=args.client_secret,
        seed=args.seed,
        density=args.density,
        token_lifetime=args.token_lifetime,
        anonymous_credits=args.anonymous_credits,
        user_credits=args.user_credits,
        all_semantics=args.all_semantics,
    )
    server = make_server(args.host, args.port, create_app(settings), threaded=True)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, which runs in this
        # very thread, so it must be called from another one.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"OpenSky simulator listening on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
