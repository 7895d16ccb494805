"""The README says what the code does: every setting, every endpoint; docs/design.md the credits.

(tests/integration/test_readme_commands.py runs the README's curl walkthroughs.)
"""

import re

import pytest

from data_collector import config as collector_config
from data_collector.collection.planning import DAY, Policy, plan_cycle, sweep_windows
from devstack.stack import REPO_ROOT
from tests.containers.deployment import dotenv_entries, env_reads
from tests.unit.test_planning import apply
from tests.utils import api_document

README = (REPO_ROOT / "README.md").read_text()
DESIGN = (REPO_ROOT / "docs" / "design.md").read_text()
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]+)`")
# Read outside the services' config classes: devstack (make run), the launcher, the tests.
OTHER_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR", "UM_URL", "DC_URL", "SIM_URL"}


def section(title: str, text: str = README, level: str = "##") -> str:
    """The text under the heading ``title`` of ``level``, up to the next heading of that level."""
    start = text.index(f"\n{level} {title}\n")
    end = text.find(f"\n{level} ", start + 1)
    return text[start : end if end != -1 else None]


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row (header and rule rows included)."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def configuration_table() -> dict[str, str]:
    """Variable name to its default cell."""
    rows = {}
    for cells in table_rows(section("Configuration"))[2:]:
        for name in VARIABLE.findall(cells[0]):
            rows[name] = cells[1]
    return rows


def test_the_configuration_table_lists_every_variable_the_code_reads():
    documented = configuration_table()
    read = {r.name for r in env_reads()} | {e.name for e in dotenv_entries()} | OTHER_VARIABLES
    assert sorted(read - documented.keys()) == [], "add these to the README's table"
    assert sorted(documented.keys() - read) == [], "the README lists variables nothing reads"


def shown(value) -> str:
    """A default as the README shows it: 2.0 as 2, False as 0."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_configuration_table_gives_the_code_s_defaults():
    documented = configuration_table()
    for read in env_reads():
        if not read.has_default:
            continue
        defaults = [read.default]
        if isinstance(read.default, str) and " if " in read.default:
            # A default that depends on another setting: "A if condition else B", both shown.
            chosen, rest = read.default.split(" if ", 1)
            defaults = [chosen, rest.split(" else ", 1)[1]]
        for default in defaults:
            if isinstance(default, str) and hasattr(collector_config, default):
                default = getattr(collector_config, default)  # a named constant
            if read.name.startswith("OPENSKY_CLIENT_") or default == "":
                assert "empty" in documented[read.name], (read.name, read.location)
                continue
            assert f"`{shown(default)}`" in documented[read.name], (read.name, read.location)


@pytest.mark.parametrize("package", ["user_manager", "data_collector"])
def test_the_api_tables_list_every_documented_operation(package):
    listed = {
        cells[0].strip("`")
        for cells in table_rows(section("The APIs"))
        if cells[0].startswith("`") and " /" in cells[0]
    }
    for path, operations in api_document(package)["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in listed, f"{method.upper()} {path}"


def steady_credits_per_day(airports: list[str], policy: Policy, start: int) -> int:
    """Credits of the last day of a week of cycles every 12 hours, the backfill long done."""
    marks, now, spent = {}, start, []
    for _ in range(14):
        plan = plan_cycle(marks, airports, now=now, policy=policy)
        spent.append(plan.cost)
        marks = apply(plan, marks, now=now)
        now += 12 * 3600
    return spent[-1] + spent[-2]


def test_the_credit_figures_are_the_planner_s():
    collection = section("What a cycle asks for, and what it costs", DESIGN, "###")
    policy = Policy(backfill_days=7, refresh_days=1, min_gap_seconds=3600, sweep=False)
    noon = 20_000 * DAY + 12 * 3600
    backfill = plan_cycle({}, ["LIRF"], now=noon, policy=policy).cost
    assert f"**{backfill} credits** per airport" in collection
    per_day = steady_credits_per_day(["LIRF"], policy, noon)
    assert f"**{per_day} credits a day** per airport" in collection
    anonymous = f"5 \N{MULTIPLICATION SIGN} {per_day} = {5 * per_day} credits"
    assert anonymous in collection and 5 * per_day <= 400
    assert 400 - 5 * per_day < backfill  # "cannot backfill a sixth the same day"
    swept_day = sum(cost for _, _, cost in sweep_windows(20_000 - 2, noon))
    assert f"**{swept_day} credits** per day swept" in collection
    # "from about a dozen airports on"
    sweeping = Policy(backfill_days=7, refresh_days=1, min_gap_seconds=3600, sweep=True)
    airports = [f"LI{chr(65 + i)}A" for i in range(14)]
    assert plan_cycle({}, airports[:11], now=noon, policy=sweeping).mode == "per-airport"
    assert plan_cycle({}, airports[:14], now=noon, policy=sweeping).mode == "sweep"
    assert "from about a dozen airports on" in collection
