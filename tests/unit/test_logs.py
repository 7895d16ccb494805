"""Log format: one JSON object per line when configured, request ids on every record."""

import json
import logging

from common.observability.logs import configure_logging
from common.observability.request_ids import bind_request_id, unbind_request_id


def test_json_lines_carry_level_message_and_request_id(capsys):
    configure_logging("INFO", "json")
    token = bind_request_id("req-123")
    try:
        logging.getLogger("demo").info("user %s deleted", "x@example.com")
    finally:
        unbind_request_id(token)
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["level"] == "INFO"
    assert record["message"] == "user x@example.com deleted"
    assert record["request_id"] == "req-123"
    assert record["time"].endswith("Z")


def test_text_lines_show_a_dash_outside_requests(capsys):
    configure_logging("INFO", "text")
    logging.getLogger("demo").warning("starting")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "WARNING" in line
    assert line.endswith("[request_id=-]")
