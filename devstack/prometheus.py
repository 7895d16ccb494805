"""Prometheus for the local stack: its configuration, and the server when one is installed.

One configuration for every deployment, built here: a scrape job per
service (its ``/metrics``, every ``PROMETHEUS_SCRAPE_SECONDS``, the job named
after the package), the alerting rules shipped in ``deploy/prometheus``,
and, when the services require a credential, the ``ops`` API key Prometheus
presents as a bearer token read from a file (``PROMETHEUS_API_KEY_FILE``), as
an operator gives it one. Only how the targets are found differs: the local
stack lists its ports; compose asks its DNS for every replica of a service
(``python -m devstack.prometheus compose`` prints that variant).

The Prometheus Operator takes the same rules as a ``PrometheusRule`` object:
``python -m devstack.prometheus prometheus-rule`` prints one holding the rules
file's groups as they are written (the production-monitoring overlay keeps it).

``make run`` starts Prometheus when a ``prometheus`` binary is on ``PATH``
(Debian's ``prometheus`` package); without one, or with ``PROMETHEUS_URL``
naming a Prometheus of your own, it writes the configuration for you to use
and says so.
"""

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from devstack.stack import LocalStack

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yml"
# Where compose's Prometheus finds the rules and the key (mounted there).
COMPOSE_RULES_FILE = "/etc/prometheus-rules/rules.yml"
COMPOSE_API_KEY_FILE = "/run/secrets/prometheus-api-key"
# A scrape that takes longer than this is a failed scrape (Prometheus's default), and
# never longer than the interval itself.
SCRAPE_TIMEOUT_SECONDS = 10
HOW_TO_GET_IT = (
    "Prometheus is not installed, so make run starts none: install it (Debian/Ubuntu: "
    "apt-get install prometheus; elsewhere the release from https://prometheus.io/download/ "
    "on your PATH), or set PROMETHEUS_URL to a Prometheus you run, with the scrape jobs of {}."
)


def configuration(
    targets: dict[str, dict[str, Any]], *, scrape_seconds: int, rules_file: str, api_key_file: str
) -> dict[str, Any]:
    """Return Prometheus's configuration: ``targets`` gives how each service's job finds it.

    ``targets`` maps each service package to the job's service discovery
    (``static_configs`` or ``dns_sd_configs``); ``api_key_file`` (empty: none)
    holds the API key Prometheus sends as a bearer token.
    """
    interval = f"{scrape_seconds}s"
    jobs = []
    for package, discovery in targets.items():
        job: dict[str, Any] = {"job_name": package, "metrics_path": "/metrics", **discovery}
        if api_key_file:
            job["authorization"] = {"type": "Bearer", "credentials_file": api_key_file}
        jobs.append(job)
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": f"{min(scrape_seconds, SCRAPE_TIMEOUT_SECONDS)}s",
            "evaluation_interval": interval,
        },
        "rule_files": [rules_file],
        "scrape_configs": jobs,
    }


def local_targets(stack: "LocalStack") -> dict[str, dict[str, Any]]:
    """Return the local stack's jobs: each service's REST port on this machine, and any more."""
    services = stack.settings.services
    addresses = {package: f"127.0.0.1:{stack.settings.http_port(package)}" for package in services}
    addresses.update(stack.settings.prometheus_extra_jobs)
    return {job: {"static_configs": [{"targets": [address]}]} for job, address in addresses.items()}


def compose_targets() -> dict[str, dict[str, Any]]:
    """Return compose's jobs: every replica of each service, found by its DNS name."""
    from devstack.stack import SERVICES, settings_class

    targets = {}
    for package in SERVICES:
        port = settings_class(package).model_fields["HTTP_PORT"].default
        name = package.replace("_", "-")
        targets[package] = {"dns_sd_configs": [{"names": [name], "type": "A", "port": port}]}
    return targets


PROMETHEUS_RULE_HEADER = """\
# The alerting rules of deploy/prometheus/rules.yml, for the Prometheus Operator: its
# groups as they are written there. Generated:
#   python -m devstack.prometheus prometheus-rule \\
#       > deploy/kubernetes/overlays/production-monitoring/prometheus-rule.yaml
# (a test fails when this differs from what it prints). Label it as your Prometheus's
# ruleSelector asks (kustomization.yaml says how).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: flight-tracker
spec:
"""


def prometheus_rule() -> str:
    """Return a PrometheusRule holding the rules file's groups, comments and layout kept."""
    lines = RULES_FILE.read_text().splitlines(keepends=True)
    start = lines.index("groups:\n")
    body = "".join(f"  {line}" if line.strip() else line for line in lines[start:])
    return PROMETHEUS_RULE_HEADER + body


def write_configuration(stack: "LocalStack") -> Path:
    """Write the local stack's configuration beside its data; return its path."""
    directory = stack.settings.data_dir.parent / "prometheus"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "prometheus.yml"
    document = configuration(
        local_targets(stack),
        scrape_seconds=stack.settings.prometheus_scrape_seconds,
        rules_file=str(RULES_FILE),
        api_key_file=stack.env.get("PROMETHEUS_API_KEY_FILE") or "",
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def installed() -> bool:
    """Tell whether a ``prometheus`` binary is on ``PATH``."""
    return shutil.which("prometheus") is not None


def start(stack: "LocalStack") -> bool:
    """Start Prometheus for the stack, unless PROMETHEUS_URL names one; return whether it runs.

    The configuration is written in every case: for the Prometheus started
    here, or for yours (``PROMETHEUS_URL``), or, when none is installed, for
    the one you will install (the log says how).
    """
    config = write_configuration(stack)
    if os.environ.get("PROMETHEUS_URL"):
        return False
    binary = shutil.which("prometheus")
    if binary is None:
        log.warning(HOW_TO_GET_IT.format(config))
        return False
    port = stack.settings.prometheus_port
    stack.supervisor.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={config.parent / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Its own chatter is not news; what goes wrong still shows.
            "--log.level=warn",
        ],
        output=stack.log_file("prometheus"),
    )
    stack.wait_for("prometheus", f"http://127.0.0.1:{port}/-/ready")
    return True


def main(argv: list[str] | None = None) -> int:
    """Print compose's configuration, or the rules as the Prometheus Operator's object."""
    parser = argparse.ArgumentParser(prog="python -m devstack.prometheus", description=__doc__)
    parser.add_argument("variant", choices=["compose", "prometheus-rule"])
    parser.add_argument("--scrape-seconds", type=int, default=15)
    parser.add_argument(
        "--api-key-file",
        default="",
        help=f"where Prometheus reads its ops API key (AUTH_MODE=on), e.g. {COMPOSE_API_KEY_FILE}",
    )
    args = parser.parse_args(argv)
    if args.variant == "prometheus-rule":
        sys.stdout.write(prometheus_rule())
        return 0
    document = configuration(
        compose_targets(),
        scrape_seconds=args.scrape_seconds,
        rules_file=COMPOSE_RULES_FILE,
        api_key_file=args.api_key_file,
    )
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
