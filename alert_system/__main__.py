"""Run the Alert System: ``python -m alert_system`` (the roles: common.process.launcher)."""

from alert_system.app import SERVICE
from common.process.launcher import run

if __name__ == "__main__":
    run(SERVICE)
