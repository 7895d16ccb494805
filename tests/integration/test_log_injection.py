"""A line break in a path cannot forge a log line (found by fuzzing)."""

import uuid

import pytest

from tests.utils import new_key, wait_until


@pytest.mark.local_stack
def test_a_line_break_in_the_path_cannot_forge_a_log_line(local_stack, um):
    marker = uuid.uuid4().hex
    forged = f"x%0A2026-01-01T00:00:00Z INFO forged-{marker}"
    assert um.delete(f"/users/{forged}", headers=new_key()).status_code == 400

    def access_line() -> str | None:
        lines = local_stack.log_text("user_manager").splitlines()
        return next((line for line in lines if f"forged-{marker}" in line), None)

    line = wait_until(access_line)
    # One line, the request's own, with the newline escaped.
    assert line.split(" access: ")[1].startswith("DELETE /users/x\\n2026-01-01T00:00:00Z INFO")
