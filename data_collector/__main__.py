"""Run the Data Collector: ``python -m data_collector`` (the roles: common.process.launcher)."""

from common.process.launcher import run
from data_collector.app import SERVICE

if __name__ == "__main__":
    run(SERVICE)
