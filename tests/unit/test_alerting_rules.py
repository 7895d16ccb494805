"""The alerting rules load, fire on what they watch (promtool's tests), and watch real metrics."""

import re
import subprocess

import pytest
import yaml

from devstack.prometheus import RULES_FILE
from devstack.stack import REPO_ROOT
from tests.utils import require_prometheus

RULES_TESTS = RULES_FILE.parent / "rules.test.yml"
# Words of PromQL that look like metric names in an expression.
PROMQL_WORDS = {"by", "on", "without", "unless", "and", "or", "bool", "ignoring", "group_left"}
# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up"}
# The alert services' pipeline gauges (common/broker/observability.py, PipelineCollector),
# which come with those services: once they are in the tree, this set goes.
PIPELINE_GAUGES = {"broker_outbox_oldest_seconds", "broker_consumer_pending_messages"}
SOURCE_DIRS = ("common", "user_manager", "data_collector", "sla_detector")


def promtool(*args: str) -> subprocess.CompletedProcess:
    require_prometheus()
    return subprocess.run(
        ["promtool", *args],
        cwd=RULES_FILE.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_rules_are_valid_and_pass_their_unit_tests():
    checked = promtool("check", "rules", RULES_FILE.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    tested = promtool("test", "rules", RULES_TESTS.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr


def metric_names(expression: str) -> set[str]:
    """Return the metric names an expression selects (functions, labels and keywords aside)."""
    without_matchers = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expression)
    without_groupings = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", " ", without_matchers)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", without_groupings))
    return {re.sub(r"_bucket$", "", name) for name in names} - PROMQL_WORDS


def declared_in_code() -> str:
    return "\n".join(
        path.read_text()
        for directory in SOURCE_DIRS
        if (REPO_ROOT / directory).is_dir()
        for path in (REPO_ROOT / directory).rglob("*.py")
    )


def alerting_rules() -> list[dict]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_metric_a_rule_watches_is_one_the_services_export(rule):
    code = declared_in_code()
    for name in metric_names(rule["expr"]) - PROMETHEUS_SERIES - PIPELINE_GAUGES:
        assert f'"{name}"' in code or f"{name} =" in code, f"{rule['alert']}: no metric {name}"
