"""Run the Alert Notifier: ``python -m alert_notifier`` (the roles: common.process.launcher)."""

from alert_notifier.app import SERVICE
from common.process.launcher import run

if __name__ == "__main__":
    run(SERVICE)
