"""The Postman collection passes against the running services, run twice by newman.

newman (Postman's command-line runner) needs Node.js. It is installed with
``npm ci`` from ``postman/package-lock.json`` into ``postman/node_modules``
(git-ignored) the first time, and again whenever the lock file changes. Without
``node`` or ``npm`` on PATH the test is skipped, and says so.
"""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.postman import COLLECTION_FILE, ENVIRONMENT_FILE, POSTMAN_DIR, SLA_FOLDER

LOCK_FILE = POSTMAN_DIR / "package-lock.json"
NEWMAN = POSTMAN_DIR / "node_modules" / ".bin" / "newman"
# Written after a successful `npm ci`: the lock file it installed.
STAMP = POSTMAN_DIR / "node_modules" / ".installed-lock-sha256"
# npm ci of newman takes ~15 s; a slow mirror gets ten times that.
INSTALL_TIMEOUT_SECONDS = 300
RUN_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="module")
def newman() -> Path:
    """The newman binary, installed from the lock file when missing or stale."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"Postman collection not run: newman needs Node.js, and {' and '.join(missing)} "
            "is not on PATH (install Node.js 16+ with npm to run it)"
        )
    digest = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    if not NEWMAN.exists() or not STAMP.exists() or STAMP.read_text() != digest:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=POSTMAN_DIR,
            check=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
        STAMP.write_text(digest)
    return NEWMAN


def folders_to_run(stack) -> list[str]:
    """The collection's folders this stack can answer: all but the SLA detector's without one.

    A running stack given by UM_URL and DC_URL has an SLA detector only when SLA_URL
    names it too.
    """
    folders = [item["name"] for item in json.loads(COLLECTION_FILE.read_text())["item"]]
    if getattr(stack, "sla_detector_url", None) is None:
        folders.remove(SLA_FOLDER)
    return folders


def run_collection(newman: Path, stack, report: Path, folders: list[str]) -> dict:
    """Run the collection's ``folders`` against ``stack``; return newman's JSON report."""
    sla_url = getattr(stack, "sla_detector_url", None) or ""
    result = subprocess.run(
        [
            str(newman),
            "run",
            str(COLLECTION_FILE),
            *[argument for name in folders for argument in ("--folder", name)],
            "--environment",
            str(ENVIRONMENT_FILE),
            "--env-var",
            f"um_url={stack.user_manager_url}",
            "--env-var",
            f"dc_url={stack.data_collector_url}",
            "--env-var",
            f"sla_url={sla_url}",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--color",
            "off",
            "--disable-unicode",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return json.loads(report.read_text())


def test_the_collection_passes_and_can_run_again_against_the_same_stack(newman, stack, tmp_path):
    folders = folders_to_run(stack)
    run_items = [i for i in json.loads(COLLECTION_FILE.read_text())["item"] if i["name"] in folders]
    requests = len(json.dumps(run_items).split('"request":')) - 1
    for run in ("first", "second"):
        report = run_collection(newman, stack, tmp_path / f"{run}.json", folders)
        stats = report["run"]["stats"]
        assert stats["requests"]["total"] == requests, run
        assert stats["requests"]["failed"] == 0, run
        assert stats["assertions"]["failed"] == 0, run
        # Every request asserts its status and X-Request-ID, most also their body.
        assert stats["assertions"]["total"] >= 2 * requests, run
