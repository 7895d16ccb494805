"""How ``make test``'s pytest-xdist workers share the suite: whole units of work, longest first.

A unit of work runs whole on one worker: a test module, or every module using
one of the session stacks that several modules share (``SHARED_STACKS``), so
that such a stack starts once, on one worker, instead of once per worker. The
units go out longest first (``LONGEST_FIRST``), then in collection order, so
that no worker is left with a long unit at the end while the other idles.

pytest-xdist's own ``--dist loadgroup`` would group by ``xdist_group`` marks,
but under pytest 9.2 it cannot attach the group to a test's id any more, and
only the workers collect: they alone see each test's fixtures. So under
``--dist loadgroup`` each worker writes every test's unit to a file in a
temporary directory of the controller (workers on the same machine, as
``-n`` starts them), and the controller's scheduler reads it: a worker writes
it before it reports its collection, and the scheduler reads it only once
every worker has. ``xdist_group`` marks play no part. Options that reorder
tests after collection (``--ff``, ``--nf``) keep each unit on one worker but
lose the longest-first order.
"""

import json
import os
import shutil
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
# The key of the units file's path in each worker's input, and in the controller's stash.
UNITS_FILE = "units_of_work_file"
units_key = pytest.StashKey[Path]()


def module_of(nodeid: str) -> str:
    """Return the path of the test module a test id names."""
    return nodeid.split("::")[0]


def units_of_work(items: list[pytest.Item]) -> dict[str, str]:
    """Return each test's unit by test id: the shared stack its module uses, else the module.

    A module using two shared stacks would start one of them on a second
    worker: refused, so that it is split instead.
    """
    stacks: dict[str, set[str]] = {}
    for item in items:
        used = {name for name in SHARED_STACKS if name in item.fixturenames}
        stacks.setdefault(module_of(item.nodeid), set()).update(used)
    unit_of_module = {}
    for module, used in stacks.items():
        if len(used) > 1:
            raise pytest.UsageError(f"{module} uses {sorted(used)}: use one shared stack a module")
        unit_of_module[module] = used.pop() if used else module
    return {item.nodeid: unit_of_module[module_of(item.nodeid)] for item in items}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Order the tests by unit, longest first; on a worker, write the units for the scheduler.

    Last of the hooks, so that it sees the tests left after deselection.
    """
    units = units_of_work(items)
    first_seen = {unit: order for order, unit in enumerate(dict.fromkeys(units.values()))}

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
        """Return the test's unit; its module when no file was written (a collection error)."""
        if self.units is None:
            try:
                self.units = json.loads(self.units_file.read_text())
            except FileNotFoundError:
                self.units = {}
        return self.units.get(nodeid) or module_of(nodeid)


def pytest_configure(config):
    """On the controller of a ``--dist loadgroup`` run, choose where the units are written."""
    if config.getoption("dist", None) == "loadgroup" and not hasattr(config, "workerinput"):
        config.stash[units_key] = Path(tempfile.mkdtemp(prefix="pytest-units-")) / "units.json"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Tell each worker where to write the units."""
    if units_key in node.config.stash:
        node.workerinput[UNITS_FILE] = str(node.config.stash[units_key])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Schedule by units of work under ``--dist loadgroup``; else leave it to pytest-xdist."""
    if units_key in config.stash:
        # The units in collection order, as the workers sorted them: not by size.
        config.option.loadscopereorder = False
        return UnitsOfWork(config, log, config.stash[units_key])
    return None


def pytest_unconfigure(config):
    """Remove the units file and its directory (with what a worker that died left there)."""
    if units_key in config.stash:
        shutil.rmtree(config.stash[units_key].parent, ignore_errors=True)
