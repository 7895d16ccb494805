"""How ``make test``'s pytest-xdist workers share the suite: whole units of work, longest first.

A unit of work runs whole on one worker: a test module, or every module using
one of the session stacks that several modules share (``SHARED_STACKS``), so
that such a stack starts once, on one worker, instead of once per worker. The
units go out longest first (``LONGEST_FIRST``), then in collection order, so
that no worker is left with a long unit at the end while the other idles.

pytest-xdist's own ``--dist loadgroup`` would group by ``xdist_group`` marks,
but under pytest 9.2 it cannot attach the group to a test's id any more. And
only the workers collect: they alone see each test's fixtures. So each worker
writes every test's unit to a file, and the controller's scheduler (the one
``--dist loadgroup`` asks for) reads it once all workers have collected.
"""

import json
import os
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

SHARED_STACKS = ("collector_stack", "secure_stack", "monitored_stack")
# The longest units (in a whole run on this project's 2-core machine: 1 to 3 minutes each,
# the rest under a minute). The order decides when a unit starts, never what runs.
LONGEST_FIRST = (
    "tests/integration/test_bench_smoke.py",
    "collector_stack",
    "monitored_stack",
    "tests/integration/test_collector_recovery.py",
    "secure_stack",
    "tests/integration/test_make_run.py",
)
# Where the workers write the units: a key of their input, and the controller's note of it.
UNITS_FILE = "units_of_work_file"
units_key = pytest.StashKey[Path]()


def module_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def units_of_work(items: list[pytest.Item]) -> dict[str, str]:
    """Return each test's unit by test id: the shared stack its module uses, else the module."""
    unit_of_module: dict[str, str] = {}
    for item in items:
        shared = [name for name in SHARED_STACKS if name in item.fixturenames]
        if shared or module_of(item.nodeid) not in unit_of_module:
            unit_of_module[module_of(item.nodeid)] = shared[0] if shared else module_of(item.nodeid)
    return {item.nodeid: unit_of_module[module_of(item.nodeid)] for item in items}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Order the tests by unit, longest first; on a worker, tell the controller the units."""
    units = units_of_work(items)
    first_seen = {unit: index for index, unit in reversed(list(enumerate(units.values())))}

    def rank(item: pytest.Item) -> tuple[int, int]:
        unit = units[item.nodeid]
        longest = LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)
        return longest, first_seen[unit]

    items.sort(key=rank)  # stable: a module's tests keep their order
    worker = getattr(config, "workerinput", None)
    if worker and UNITS_FILE in worker:
        written = Path(f"{worker[UNITS_FILE]}.{worker['workerid']}")
        written.write_text(json.dumps(units))
        os.replace(written, worker[UNITS_FILE])  # whole, whichever worker writes last


class UnitsOfWork(LoadScopeScheduling):
    """pytest-xdist's scheduling by scope, each scope a unit of work from the workers' file."""

    def __init__(self, config: pytest.Config, log, units_file: Path):
        super().__init__(config, log)
        self.units_file = units_file
        self.units: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.units is None:
            self.units = json.loads(self.units_file.read_text())
        return self.units[nodeid]


def pytest_configure(config):
    """On the controller of a ``--dist loadgroup`` run, choose where the units are written."""
    if config.getoption("dist", None) == "loadgroup" and not hasattr(config, "workerinput"):
        config.stash[units_key] = Path(tempfile.mkdtemp(prefix="pytest-units-")) / "units.json"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    if units_key in node.config.stash:
        node.workerinput[UNITS_FILE] = str(node.config.stash[units_key])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if units_key in config.stash:
        # The units in collection order, as the workers sorted them: not by size.
        config.option.loadscopereorder = False
        return UnitsOfWork(config, log, config.stash[units_key])
    return None


def pytest_unconfigure(config):
    if units_key in config.stash:
        units_file = config.stash[units_key]
        units_file.unlink(missing_ok=True)
        units_file.parent.rmdir()
