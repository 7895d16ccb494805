"""Run the User Manager: ``python -m user_manager`` (serve) or ``... migrate``."""

import sys

from common.launcher import main

if __name__ == "__main__":
    sys.exit(main("user_manager", sys.argv, roles=["grpc_server", "worker"]))
