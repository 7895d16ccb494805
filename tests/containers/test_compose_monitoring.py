"""Compose's Prometheus and SLA detector, checked without an engine.

The scrape configuration is committed (deploy/compose/prometheus) and must
be what devstack/prometheus.py generates; its start script runs here in a
POSIX shell (the image's is busybox's) to show that every scrape interval
gives the generator's configuration, which promtool then accepts.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack import prometheus as generator
from sla_detector.inputs import read_file
from tests.containers.deployment import (
    REPO_ROOT,
    app_services,
    http_port_variable,
    load_compose,
    read_dotenv,
    service_environment,
)

COMPOSE = load_compose(read_dotenv())
SERVICES = app_services(COMPOSE)
PROMETHEUS = COMPOSE["services"]["prometheus"]
DETECTOR = COMPOSE["services"]["sla-detector"]
CONFIG_DIR = REPO_ROOT / "deploy" / "compose" / "prometheus"
COMMITTED_CONFIG = CONFIG_DIR / "prometheus.yml"
START_SCRIPT = CONFIG_DIR / "start.sh"
# Where compose's Prometheus finds its configuration directory, and its page's port.
CONFIG_DIR_IN_CONTAINER = "/etc/prometheus"
PROMETHEUS_PORT = 9090


def mounts(spec: dict) -> dict[str, tuple[str, list[str]]]:
    """Map each mount target of a service to its source and options."""
    found = {}
    for volume in spec.get("volumes") or []:
        source, target, *options = str(volume).split(":")
        found[target] = (source, options)
    return found


def generated(scrape_seconds: int = 15, api_key_file: str = generator.COMPOSE_API_KEY_FILE):
    """The configuration devstack/prometheus.py prints for compose."""
    return generator.configuration(
        generator.compose_targets(),
        scrape_seconds=scrape_seconds,
        rules_file=generator.COMPOSE_RULES_FILE,
        api_key_file=api_key_file,
    )


def run_start_script(tmp_path: Path, template: Path, **env: str) -> subprocess.CompletedProcess:
    """Run start.sh as the container's entrypoint does, with `true` in place of Prometheus."""
    output = tmp_path / "prometheus.yml"
    return subprocess.run(
        ["/bin/sh", str(START_SCRIPT), str(template), str(output), "true"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def template_with_key_at(tmp_path: Path, key_file: Path) -> Path:
    """The committed configuration with its jobs reading the key from ``key_file``."""
    template = tmp_path / "template.yml"
    text = COMMITTED_CONFIG.read_text().replace(generator.COMPOSE_API_KEY_FILE, str(key_file))
    template.write_text(text)
    return template


def test_the_committed_configuration_is_the_generators():
    assert yaml.safe_load(COMMITTED_CONFIG.read_text()) == generated(), (
        "deploy/compose/prometheus/prometheus.yml is stale: regenerate it with "
        "`python -m devstack.prometheus compose --api-key-file "
        f"{generator.COMPOSE_API_KEY_FILE}`"
    )


@pytest.mark.parametrize("seconds", [1, 5, 15, 60])
def test_start_writes_the_scrape_interval_of_the_environment(tmp_path, seconds):
    result = run_start_script(
        tmp_path,
        template_with_key_at(tmp_path, tmp_path / "absent"),
        PROMETHEUS_SCRAPE_SECONDS=str(seconds),
    )
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    # No key file (compose mounts /dev/null): no credential sent.
    assert written == generated(seconds, api_key_file="")


def test_start_keeps_the_bearer_token_when_a_key_is_mounted(tmp_path):
    key = tmp_path / "key"
    key.write_text("an-ops-api-key")
    result = run_start_script(tmp_path, template_with_key_at(tmp_path, key))
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert written == generated(15, api_key_file=str(key))


@pytest.mark.parametrize("value", ["0", "abc", "015", "-5"])
def test_start_refuses_an_interval_that_is_not_a_number_of_seconds(tmp_path, value):
    result = run_start_script(tmp_path, COMMITTED_CONFIG, PROMETHEUS_SCRAPE_SECONDS=value)
    assert result.returncode == 2
    assert "PROMETHEUS_SCRAPE_SECONDS" in result.stderr
    assert not (tmp_path / "prometheus.yml").exists()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_configuration_and_its_rules(tmp_path):
    result = run_start_script(tmp_path, COMMITTED_CONFIG, PROMETHEUS_SCRAPE_SECONDS="5")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    # The rules where compose mounts them are the repository's file.
    config["rule_files"] = [str(generator.RULES_FILE)]
    checked = tmp_path / "checked.yml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["promtool", "check", "config", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_is_the_official_image_started_by_the_script_on_the_mounted_files():
    assert PROMETHEUS["image"].startswith("prom/prometheus:v"), PROMETHEUS["image"]
    mounted = mounts(PROMETHEUS)
    source, options = mounted[CONFIG_DIR_IN_CONTAINER]
    assert (REPO_ROOT / source).resolve() == CONFIG_DIR and options == ["ro"]
    # The rules where the configuration names them: the one file every deployment loads.
    (rules_file,) = generated()["rule_files"]
    source, options = mounted[rules_file]
    assert (REPO_ROOT / source).resolve() == generator.RULES_FILE and options == ["ro"]
    # The key where the jobs read it: PROMETHEUS_API_KEY_FILE's, else an empty file.
    source, options = mounted[generator.COMPOSE_API_KEY_FILE]
    assert source == "/dev/null" and options == ["ro"]
    given = load_compose({**read_dotenv(), "PROMETHEUS_API_KEY_FILE": "/secrets/key"})
    assert mounts(given["services"]["prometheus"])[generator.COMPOSE_API_KEY_FILE][0] == (
        "/secrets/key"
    )
    shell, script, template, output = PROMETHEUS["entrypoint"]
    assert shell == "/bin/sh" and script == f"{CONFIG_DIR_IN_CONTAINER}/{START_SCRIPT.name}"
    assert template == f"{CONFIG_DIR_IN_CONTAINER}/{COMMITTED_CONFIG.name}"
    assert f"--config.file={output}" in PROMETHEUS["command"]
    assert output.startswith("/tmp/"), "the only writable place beside the data volume"
    assert START_SCRIPT.stat().st_mode & 0o111
    # The series survive a restart.
    data = [arg for arg in PROMETHEUS["command"] if arg.startswith("--storage.tsdb.path=")]
    (path,) = [arg.partition("=")[2] for arg in data]
    assert mounted[path][0] in COMPOSE["volumes"]


def test_prometheus_scrapes_each_service_on_a_network_of_their_own():
    jobs = {job["job_name"]: job for job in generated()["scrape_configs"]}
    assert set(jobs) == set(SERVICES.values()), "one job per service"
    for name, package in SERVICES.items():
        (discovery,) = jobs[package]["dns_sd_configs"]
        assert discovery["names"] == [name] and discovery["type"] == "A"
        port = service_environment(COMPOSE["services"][name])[http_port_variable(package)]
        assert discovery["port"] == int(port)
        shared = set(PROMETHEUS["networks"]) & set(COMPOSE["services"][name]["networks"])
        assert shared == {f"monitoring-{name}"}, name
        members = {
            other
            for other, spec in COMPOSE["services"].items()
            if f"monitoring-{name}" in spec["networks"]
        }
        assert members == {"prometheus", name}
        assert COMPOSE["networks"][f"monitoring-{name}"]["internal"] is True


def test_prometheus_is_published_on_this_machine_only_and_its_port_moves():
    for env in (read_dotenv(), {**read_dotenv(), "PUBLISH_HOST": "0.0.0.0"}):
        spec = load_compose(env)["services"]["prometheus"]
        assert spec["ports"] == [f"127.0.0.1:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"]
    moved = load_compose({**read_dotenv(), "PROMETHEUS_PORT": "19090"})
    assert moved["services"]["prometheus"]["ports"] == [f"127.0.0.1:19090:{PROMETHEUS_PORT}"]
    assert f"--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}" in PROMETHEUS["command"]
    # A published port needs a network with a way out: Prometheus's alone.
    (outside,) = [
        name
        for name in PROMETHEUS["networks"]
        if not (COMPOSE["networks"][name] or {}).get("internal")
    ]
    assert [n for n, s in COMPOSE["services"].items() if outside in s["networks"]] == ["prometheus"]


def test_prometheus_and_the_detector_share_one_scrape_interval():
    env = {**read_dotenv(), "PROMETHEUS_SCRAPE_SECONDS": "7"}
    compose = load_compose(env)
    for name in ("prometheus", "sla-detector"):
        given = service_environment(compose["services"][name])["PROMETHEUS_SCRAPE_SECONDS"]
        assert given == "7", name


def test_the_detector_asks_the_stacks_prometheus_and_watches_the_shipped_sla_file():
    env = service_environment(DETECTOR)
    assert env["PROMETHEUS_URL"] == f"http://prometheus:{PROMETHEUS_PORT}"
    assert DETECTOR["depends_on"]["prometheus"] == {"condition": "service_started"}
    source, options = mounts(DETECTOR)[env["SLA_CONFIG_FILE"]]
    assert options == ["ro"]
    # The file the detector accepts (the same as it reads at start).
    assert read_file(str(REPO_ROOT / source)).config.metrics
    other = load_compose({**read_dotenv(), "SLA_CONFIG_FILE": "/etc/mine.yml"})
    assert service_environment(other["services"]["sla-detector"])["SLA_CONFIG_FILE"] == (
        "/etc/mine.yml"
    )
