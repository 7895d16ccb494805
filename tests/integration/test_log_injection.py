"""A path cannot forge a log line, nor leave an email in one (found by fuzzing and review)."""

import uuid

import pytest

from tests.utils import new_key, unique_email, wait_until


def access_line(local_stack, marker: str) -> str | None:
    lines = local_stack.log_text("user_manager").splitlines()
    return next((line for line in lines if marker in line and " access: " in line), None)


@pytest.mark.local_stack
def test_a_line_break_in_the_path_cannot_forge_a_log_line(local_stack, um):
    marker = uuid.uuid4().hex
    forged = f"x%0A2026-01-01T00:00:00Z INFO forged-{marker}"
    assert um.get(f"/no-such-route/{forged}").status_code == 404

    line = wait_until(lambda: access_line(local_stack, f"forged-{marker}"))
    # One line, the request's own, with the newline escaped.
    assert line.split(" access: ")[1].startswith("GET /no-such-route/x\\n2026-01-01T00:00:00Z INFO")


@pytest.mark.local_stack
def test_an_email_in_the_path_is_logged_as_a_placeholder(local_stack, um):
    email = unique_email("logged")
    assert um.delete(f"/users/{email}", headers=new_key()).status_code == 404
    marker = uuid.uuid4().hex
    assert um.get(f"/no-such-route/{marker}/{email}").status_code == 404

    wait_until(lambda: access_line(local_stack, marker))
    log = local_stack.log_text("user_manager")
    assert "DELETE /users/<email> 404" in log
    assert f"GET /no-such-route/{marker}/<email> 404" in log
    assert email not in log
