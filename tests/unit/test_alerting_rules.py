"""The alerting rules load, fire on what they watch (promtool's tests), and watch real metrics."""

import re
import subprocess

import pytest
import yaml

from common.broker.observability import LAG_GAUGES
from devstack.prometheus import RULES_FILE
from devstack.stack import REPO_ROOT, SERVICES
from tests.utils import promtool as run_promtool

RULES_TESTS = RULES_FILE.parent / "rules.test.yml"
# Words of PromQL that look like metric names in an expression.
PROMQL_WORDS = {"by", "on", "without", "unless", "and", "or", "bool", "ignoring", "group_left"}
# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up"}
# Gauges whose names the code builds rather than spells out.
BUILT_NAMES = {f"broker_consumer_{name}_messages" for name in LAG_GAUGES}
SOURCE_DIRS = ("common", *SERVICES)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return run_promtool(*args, cwd=RULES_FILE.parent)


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
    for name in metric_names(rule["expr"]) - PROMETHEUS_SERIES - BUILT_NAMES:
        assert f'"{name}"' in code or f"{name} =" in code, f"{rule['alert']}: no metric {name}"
