"""make run's Prometheus: one configuration, every service of the stack, your Prometheus instead."""

import yaml

from devstack import prometheus
from devstack.stack import GRPC_SERVICES, SERVICES, LocalStack, StackSettings


def stack_on(tmp_path, **env) -> LocalStack:
    stack = LocalStack(StackSettings.on_free_ports(tmp_path / "pg", prometheus=True))
    stack.env = env
    return stack


def test_every_service_of_the_stack_is_a_job_scraped_with_the_ops_key(tmp_path):
    stack = stack_on(tmp_path, PROMETHEUS_API_KEY_FILE="/secrets/key")

    config = yaml.safe_load(prometheus.write_configuration(stack).read_text())

    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == [str(prometheus.RULES_FILE)]
    assert prometheus.RULES_FILE.exists()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == list(SERVICES)
    for package, job in jobs.items():
        port = stack.settings.http_port(package)
        assert job["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]
        assert job["authorization"] == {"type": "Bearer", "credentials_file": "/secrets/key"}


def test_without_a_key_file_prometheus_sends_no_credential(tmp_path):
    config = yaml.safe_load(prometheus.write_configuration(stack_on(tmp_path)).read_text())
    assert all("authorization" not in job for job in config["scrape_configs"])


def test_prometheus_url_names_yours_and_none_is_started(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_URL", "http://prometheus.example:9090/")
    stack = stack_on(tmp_path)

    assert prometheus.start(stack) is False

    assert stack.prometheus_url == "http://prometheus.example:9090"
    assert "prometheus" not in stack.supervisor.children
    # Its scrape jobs are written for you to add to yours.
    assert (tmp_path / "prometheus" / "prometheus.yml").exists()


def test_compose_scrapes_every_replica_by_dns_with_the_same_rules(capsys):
    assert prometheus.main(["compose", "--scrape-seconds", "5", "--api-key-file", "/run/k"]) == 0

    config = yaml.safe_load(capsys.readouterr().out)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == [prometheus.COMPOSE_RULES_FILE]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == list(SERVICES)
    assert jobs["user_manager"]["dns_sd_configs"] == [
        {"names": ["user-manager"], "type": "A", "port": 5001}
    ]
    assert jobs["data_collector"]["authorization"]["credentials_file"] == "/run/k"


def test_a_stack_of_some_services_scrapes_only_those(tmp_path):
    stack = LocalStack(
        StackSettings.on_free_ports(tmp_path / "pg", prometheus=True, services=GRPC_SERVICES)
    )
    stack.env = {}

    config = yaml.safe_load(prometheus.write_configuration(stack).read_text())

    assert [job["job_name"] for job in config["scrape_configs"]] == list(GRPC_SERVICES)
