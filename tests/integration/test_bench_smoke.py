"""The benchmark's scripts still run: ``python -m bench --quick`` on tiny data, one second each.

Figures are not checked here (speed is measured by ``make bench``, never
asserted in a test); what is checked is that every scenario ran against
its own stack and got answers without errors, in rounds reported as a
median with its range, through the authentication layer too, and that the
soak runs.
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
    # The quick benchmark may take up to its own 480 s limit on a loaded machine; the
    # suite's default 300 s would cut it short first.
    pytest.mark.timeout(600),
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
        # Two rounds of every scenario and layer, on two cores shared with other suites.
        timeout=480,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _cells(table: str, *names: str) -> list[str]:
    """The cells of the first row whose first cells are ``names``."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[: len(names)] == list(names):
            return cells
    raise AssertionError(f"no row for {names!r} in:\n{table}")


def _rate(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_quick_benchmark_runs_every_scenario_without_errors():
    table = _bench()
    for ceiling in ("bare Flask", "one SELECT", "one INSERT", "page of 100"):
        cells = _cells(table, ceiling)
        assert int(cells[1]) >= 2 and _rate(cells[2]) > 0 and cells[6] == "0", cells
    assert _rate(_cells(table, "batched upsert (rows/s)")[2]) > 0
    for name in SCENARIOS:
        cells = _cells(table, name)
        assert _rate(cells[1]) > 0, cells
        assert cells[4] == "0", f"{name} had errors: {cells}"
    # A median ratio with the range of the rounds.
    assert re.fullmatch(r"\d+% \(\d+-\d+%\)", _cells(table, "get_user")[7]), table
    for credential in ("API key", "JWT"):
        for name in ("get_user", "flights_last"):
            cells = _cells(table, f"auth ({credential})", name)
            assert _rate(cells[2]) > 0 and cells[4] == "0", cells
    assert "gateway: " in table, table
    for service in ("user_manager", "data_collector"):
        assert re.search(rf"\| {service} \| web worker \| \d+ \| [\d.]+", table), table
    assert re.search(r"Stack total: \d+ MB resident in \d+ processes", table), table


def test_quick_soak_reports_rss_before_and_after():
    table = _bench("--soak", "2")
    assert "errors 0." in table, table
    assert re.search(r"\| user_manager \| web worker \| \d+ \| [\d.]+ \| [\d.]+ \|", table), table
    assert "Soak RSS: every process within 10%" in table or "Soak RSS: RSS grew" in table, table
