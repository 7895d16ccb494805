"""The README's curl walkthroughs work as written, against the suite's stack.

Each ``bash`` block of "Try it" and of the idempotency scenarios runs as is,
only with the stack's ports in place of 5001 and 5002. Where a comment names
the status a command answers, the command must answer it.
"""

import re
import shutil
import subprocess

import pytest

from devstack.stack import REPO_ROOT
from tests.utils import Api, new_key

pytestmark = pytest.mark.local_stack

README = (REPO_ROOT / "README.md").read_text()
STATUS = re.compile(r"\b([2-5]\d\d)\b")


def bash_blocks(heading: str) -> list[str]:
    """The ``bash`` code blocks under the README heading that starts with ``heading``."""
    start = README.index(f"\n{heading}")
    end = README.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", README[start:end], flags=re.DOTALL)


def expected_statuses(block: str) -> list[int | None]:
    """For each curl command, the status its comment (inline, or the line above) names."""
    expected, comment = [], ""
    for line in block.splitlines():
        if line.startswith("#"):
            comment = line
        elif line.startswith("curl"):
            _, _, inline = line.partition("   # ")
            found = STATUS.search(inline or comment)
            expected.append(int(found.group(1)) if found else None)
            comment = ""
    return expected


def delete_their_users(blocks: list[str], local_stack) -> None:
    """Delete the users the blocks create, which may exist already.

    The fuzzer sends the API documents' examples, which use the same emails.
    """
    users = Api(local_stack.user_manager_url)
    for email in set(re.findall(r"[\w.+-]+@example\.com", "".join(blocks))):
        assert users.delete(f"/users/{email}", headers=new_key()).status_code in (200, 404)


def run(block: str, local_stack) -> str:
    ports = local_stack.settings
    script = block.replace("localhost:5001", f"127.0.0.1:{ports.user_manager_http_port}")
    script = script.replace("localhost:5002", f"127.0.0.1:{ports.data_collector_http_port}")
    result = subprocess.run(
        ["bash", "-c", "set -e\n" + script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("bash", "curl", "python3"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README's commands need {tool}, which is not on PATH")


def test_try_it_creates_follows_shows_and_deletes(local_stack):
    [block] = bash_blocks("### Try it")
    delete_their_users([block], local_stack)
    output = run(block, local_stack)
    assert '"email":"mario.rossi@example.com"' in output
    assert '{"message":"Interest added and data fetch initiated"}' in output
    assert '"days_requested":7' in output
    assert output.rstrip().endswith("[]")  # the interests went with the user


def test_the_idempotency_scenarios_answer_what_their_comments_say(local_stack):
    blocks = bash_blocks("### At most once")
    assert len(blocks) == 2
    delete_their_users(blocks, local_stack)
    for block in blocks:
        expected = expected_statuses(block)
        assert None not in expected, "every curl of the scenarios names its status"
        output = run(block, local_stack)
        statuses = [int(code) for code in re.findall(r"^HTTP/1\.1 (\d{3})", output, re.M)]
        assert statuses == expected
        assert output.count("Idempotent-Replayed: true") == 1
