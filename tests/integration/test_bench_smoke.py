"""The benchmark's scripts still run: ``python -m bench --quick`` on tiny data, one second each.

Figures are not checked here (speed is measured by ``make bench``, never
asserted in a test); what is checked is that every scenario ran against
its own stack and got answers without errors, and that the soak runs.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from devstack.stack import REPO_ROOT

pytestmark = [
    pytest.mark.local_stack,
    pytest.mark.skipif(
        shutil.which("wrk") is None and shutil.which("apt-get") is None,
        reason="wrk is not installed and cannot be installed here",
    ),
]

SCENARIOS = (
    "create_user",
    "replay_user",
    "get_user",
    "list_users",
    "add_interest",
    "flights_by_airport @2000",
    "flights_last @2000",
    "flights_average @2000",
    "flights_for_user @2000",
    "ingest (rows/s)",
    "flights_last during ingest",
    "flights_by_airport @4000",
    "flights_last @4000",
    "flights_average @4000",
    "flights_for_user @4000",
)


def _bench(*args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _cells(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name!r} in:\n{table}")


def test_quick_benchmark_runs_every_scenario_without_errors():
    table = _bench()
    for ceiling in ("bare Flask", "one SELECT", "one INSERT"):
        cells = _cells(table, ceiling)
        assert float(cells[1].replace(",", "")) > 0 and cells[4] == "0", cells
    assert float(_cells(table, "batched upsert (rows/s)")[1].replace(",", "")) > 0
    for name in SCENARIOS:
        cells = _cells(table, name)
        assert float(cells[1].replace(",", "")) > 0, cells
        assert cells[4] == "0", f"{name} had errors: {cells}"
    for service in ("user_manager", "data_collector"):
        assert re.search(rf"\| {service} \| web worker \| \d+ \| [\d.]+", table), table


def test_quick_soak_reports_rss_before_and_after():
    table = _bench("--soak", "2")
    assert "errors 0." in table, table
    assert re.search(r"\| user_manager \| web worker \| \d+ \| [\d.]+ \| [\d.]+ \|", table), table
