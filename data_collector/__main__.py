"""Run the Data Collector: ``python -m data_collector`` (serve) or ``... migrate``."""

import sys

from common.launcher import main

if __name__ == "__main__":
    sys.exit(main("data_collector", sys.argv, roles=["grpc_server", "worker"]))
