"""The SLA detector's background worker: the checks (role ``worker``), on a scheduler thread.

One job, every second: on its first run it adopts ``SLA_CONFIG_FILE``
(:func:`sla_detector.configuration.adopt_file`), then each run checks every
metric when T_check has passed since the last check of any replica
(:mod:`sla_detector.checks`). Looking every second lets a new T_check set
through the API apply at once, with no restart. The outbox relay beside it
publishes the breach events.
"""

from flask import Flask

from common.process.scheduling import PeriodicJob
from sla_detector import checks, configuration


class Checker:
    """The check job: adopts the configuration file once, then checks whenever due."""

    def __init__(self):
        self.file_adopted = False

    def __call__(self) -> None:
        """Run one look (in the app's context): adopt the file first if not yet done."""
        if not self.file_adopted:
            configuration.adopt_file(warn=True)
            self.file_adopted = True
        checks.check_if_due()


def jobs(app: Flask) -> list[PeriodicJob]:
    """Return the check job (the launcher starts and stops it)."""
    # A look is one UPDATE of a single row: cheap enough every second.
    return [PeriodicJob("sla-check", Checker(), checks.LOOK_EVERY_SECONDS)]
