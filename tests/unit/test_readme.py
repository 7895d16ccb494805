"""The docs say what the code does.

The README lists every endpoint, docs/configuration.md every setting, docs/design.md
the credits; every relative link of the README and docs/ leads to a file and heading
that exist. (tests/integration/test_readme_commands.py runs the README's curl walkthroughs.)
"""

import re

import pytest

from data_collector import config as collector_config
from data_collector.collection.planning import DAY, Policy, plan_cycle, sweep_windows
from devstack.stack import REPO_ROOT
from tests.containers.deployment import service_packages, settings_class
from tests.unit.test_planning import apply
from tests.utils import api_document

README = (REPO_ROOT / "README.md").read_text()
DESIGN = (REPO_ROOT / "docs" / "design.md").read_text()
CONFIGURATION = (REPO_ROOT / "docs" / "configuration.md").read_text()
SETTINGS_TABLE = "Every setting"
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]+)`")
SERVICE_PACKAGES = service_packages()
# Rows of the table that no service's settings class reads, and who reads them instead.
NOT_SERVICE_SETTINGS = {
    "OPENSKY_SIMULATOR": "make run",
    "OPENSKY_SIMULATOR_PORT": "make run",
    "NATS_PORT": "make run",
    "MAIL_CATCHER_SMTP_PORT": "make run",
    "MAIL_CATCHER_HTTP_PORT": "make run",
    "PUBLISH_HOST": "compose",
    "GATEWAY_REQUESTS_IN_FLIGHT": "compose (its gateway)",
    "GATEWAY_RATE_PER_SECOND": "compose (its gateway)",
    "GATEWAY_BURST": "compose (its gateway)",
    "GATEWAY_ADDRESS_RATE_PER_SECOND": "compose (its gateway)",
    "GATEWAY_ADDRESS_BURST": "compose (its gateway)",
    "USER_DB_POSTGRES_PASSWORD": "compose",
    "USER_DB_OWNER_PASSWORD": "compose",
    "USER_DB_SERVING_PASSWORD": "compose",
    "DATA_DB_POSTGRES_PASSWORD": "compose",
    "DATA_DB_OWNER_PASSWORD": "compose",
    "DATA_DB_SERVING_PASSWORD": "compose",
    "ALERT_DB_POSTGRES_PASSWORD": "compose",
    "ALERT_DB_OWNER_PASSWORD": "compose",
    "ALERT_DB_SERVING_PASSWORD": "compose",
    "NOTIFIER_DB_POSTGRES_PASSWORD": "compose",
    "NOTIFIER_DB_OWNER_PASSWORD": "compose",
    "NOTIFIER_DB_SERVING_PASSWORD": "compose",
    "SLA_DB_POSTGRES_PASSWORD": "compose",
    "SLA_DB_OWNER_PASSWORD": "compose",
    "SLA_DB_SERVING_PASSWORD": "compose",
    "PROMETHEUS_MULTIPROC_DIR": "the launcher and prometheus_client",
    "NODE_NAME": "the metrics (Kubernetes' downward API)",
    "PROMETHEUS_PORT": "make run and compose",
    "PROMETHEUS_API_KEY_FILE": "make run and compose",
    "UM_URL": "the test suite",
    "DC_URL": "the test suite",
    "SIM_URL": "the test suite",
    "SLA_URL": "the test suite",
}
# Defaults that depend on the machine: the table names the constant.
MACHINE_DEPENDENT_DEFAULTS = {"WEB_CONCURRENCY": "`DEFAULT_WEB_WORKERS`"}


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
    for cells in table_rows(section(SETTINGS_TABLE, CONFIGURATION))[2:]:
        for name in VARIABLE.findall(cells[0]):
            rows[name] = cells[1]
    return rows


def service_settings() -> dict[str, list]:
    """Every variable a service's settings class reads, with its field in each class."""
    fields = {}
    for package in SERVICE_PACKAGES:
        cls = settings_class(package)
        for variable, attribute in cls.variables().items():
            fields.setdefault(variable, []).append(cls.model_fields[attribute])
    return fields


def test_the_configuration_table_lists_every_service_setting_and_nothing_else():
    documented = configuration_table().keys()
    settings = service_settings().keys()
    assert not NOT_SERVICE_SETTINGS.keys() & settings, "a service reads it: not an exception"
    assert sorted(settings - documented) == [], "add these to docs/configuration.md's table"
    assert sorted(documented - settings - NOT_SERVICE_SETTINGS.keys()) == [], (
        "docs/configuration.md lists variables no settings class reads"
    )


def shown(value) -> str:
    """A default as the table shows it: 2.0 as 2, False as 0."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def documented_defaults() -> dict[str, str]:
    """Each variable's default cell; a row of N variables and N values pairs them in order."""
    defaults = {}
    for cells in table_rows(section(SETTINGS_TABLE, CONFIGURATION))[2:]:
        names, values = VARIABLE.findall(cells[0]), re.findall(r"`([^`]*)`", cells[1])
        for index, name in enumerate(names):
            defaults[name] = f"`{values[index]}`" if len(values) == len(names) else cells[1]
    return defaults


def test_the_configuration_table_gives_the_settings_defaults():
    documented = documented_defaults()
    for variable, fields in service_settings().items():
        for field in fields:
            if field.default_factory is not None:
                continue  # computed from other settings: the table says how, in words
            if variable in MACHINE_DEPENDENT_DEFAULTS:
                assert MACHINE_DEPENDENT_DEFAULTS[variable] in documented[variable]
            elif field.default is None:
                assert documented[variable].startswith(("none", "unset")), variable
            elif field.default == "":
                assert "empty" in documented[variable], variable
            else:
                assert f"`{shown(field.default)}`" in documented[variable], variable


def test_the_computed_defaults_are_the_documented_ones():
    documented = configuration_table()
    credits = documented["OPENSKY_DAILY_CREDITS"]
    assert f"`{collector_config.ANONYMOUS_DAILY_CREDITS}` anonymous" in credits
    assert f"`{collector_config.ACCOUNT_DAILY_CREDITS}` with credentials" in credits
    gap = documented["COLLECT_MIN_GAP_MINUTES"]
    assert gap.startswith(f"`{collector_config.MIN_GAP_MINUTES}`, or `COLLECT_INTERVAL_MINUTES`")
    assert documented["GRPC_BIND_HOST"].startswith("`BIND_HOST`")
    for package in SERVICE_PACKAGES:
        settings = settings_class(package)
        migration = documented[settings.MIGRATION_DATABASE_URL_VARIABLE]
        assert migration.startswith("the serving URL")
        assert f"`{settings.DATABASE_URL_VARIABLE}`" in migration


@pytest.mark.parametrize("package", ["user_manager", "data_collector", "sla_detector"])
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


FENCED_CODE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings (a repeated one gets -1, -2, ...)."""
    found: set[str] = set()
    for heading in HEADING.findall(FENCED_CODE.sub("", markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, repeat = slug, 0
        while candidate in found:
            repeat += 1
            candidate = f"{slug}-{repeat}"
        found.add(candidate)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(document):
    text = FENCED_CODE.sub("", document.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address or mailto:, not a file of the repository
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no such heading")
    assert broken == [], f"{document.name}: {broken}"


def test_the_readme_points_at_every_page_of_docs():
    linked = {target.partition("#")[0] for target in LINK.findall(README)}
    pages = {f"docs/{page.name}" for page in (REPO_ROOT / "docs").glob("*.md")}
    assert sorted(pages - linked) == []


def test_the_design_s_file_table_names_files_that_exist():
    """Each path of "The code, room by room", a bare file name relative to its row's folders."""
    missing = []
    for cells in table_rows(section("The code, room by room", DESIGN))[2:]:
        named = re.findall(r"`([^` ]+)`", cells[0])
        folders = {name if name.endswith("/") else name.rpartition("/")[0] for name in named}
        for name in re.findall(r"`([^` ]+\.(?:py|md|yml|proto|sh)|[^` ]+/)`", " ".join(cells)):
            if not any((REPO_ROOT / folder / name).exists() for folder in ("", *folders)):
                missing.append(name)
    assert missing == []
