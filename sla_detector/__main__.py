"""Run the SLA breach detector: ``python -m sla_detector`` (the roles: common.process.launcher)."""

from common.process.launcher import run
from sla_detector.app import SERVICE

if __name__ == "__main__":
    run(SERVICE)
