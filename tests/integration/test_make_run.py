"""``make run`` (python -m devstack): starts everything, keeps data, and Ctrl-C leaves nothing."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from devstack.stack import free_port
from tests.utils import Api, create_user, wait_until

pytestmark = pytest.mark.local_stack


class RunningDevstack:
    """``python -m devstack`` as a developer runs it, on free ports."""

    def __init__(self, data_dir: Path, ports: dict[str, int], *, simulator: bool = False):
        env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
        env.update({name: str(port) for name, port in ports.items()})
        env["OPENSKY_SIMULATOR"] = "1" if simulator else "0"
        env["WEB_CONCURRENCY"] = "2"
        self.ports = ports
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        for line in self.process.stdout:
            self.output.append(line)
            if "Press Ctrl-C" in line:
                break
        assert self.process.poll() is None, "".join(self.output)
        self.um = Api(f"http://127.0.0.1:{ports['USER_MANAGER_HTTP_PORT']}")

    def interrupt(self) -> list[psutil.Process]:
        """Press Ctrl-C; return the processes that were running under it."""
        descendants = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGINT)
        self.output.extend(self.process.stdout)
        assert self.process.wait(timeout=60) == 0, "".join(self.output)
        return descendants


@pytest.fixture
def ports():
    names = [
        "USER_MANAGER_HTTP_PORT",
        "DATA_COLLECTOR_HTTP_PORT",
        "USER_MANAGER_GRPC_PORT",
        "DATA_COLLECTOR_GRPC_PORT",
        "OPENSKY_SIMULATOR_PORT",
        "ALERT_SYSTEM_HTTP_PORT",
        "ALERT_NOTIFIER_HTTP_PORT",
        "NATS_PORT",
        "MAIL_CATCHER_SMTP_PORT",
        "MAIL_CATCHER_HTTP_PORT",
        "SLA_HTTP_PORT",
        "PROMETHEUS_PORT",
    ]
    return {name: free_port() for name in names}


def test_banner_ctrl_c_and_data_kept_across_restarts(tmp_path, ports):
    data_dir = tmp_path / "postgres"
    first = RunningDevstack(data_dir, ports)
    banner = "".join(first.output)
    assert f"http://127.0.0.1:{ports['USER_MANAGER_HTTP_PORT']}" in banner
    assert f"http://127.0.0.1:{ports['DATA_COLLECTOR_HTTP_PORT']}" in banner
    for service in ("ALERT_SYSTEM", "ALERT_NOTIFIER"):
        url = f"http://127.0.0.1:{ports[f'{service}_HTTP_PORT']}"
        assert url in banner and requests.get(f"{url}/ping", timeout=5).ok
    # A newcomer is told where their alerts land, and it answers.
    mail_catcher = f"http://127.0.0.1:{ports['MAIL_CATCHER_HTTP_PORT']}/"
    assert f"mail catcher at {mail_catcher}" in banner
    assert requests.get(f"{mail_catcher}messages", timeout=5).json() == []
    if shutil.which("prometheus"):
        prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
        assert f"Prometheus      {prometheus}" in banner
        assert requests.get(f"{prometheus}/-/ready", timeout=5).ok
    else:
        assert "Prometheus      not running (not installed" in banner
    email = create_user(first.um)

    descendants = first.interrupt()
    # Four launchers, their gunicorn masters with workers, gRPC and workers, NATS, the catcher.
    assert len(descendants) >= 12
    psutil.wait_procs(descendants, timeout=5)
    assert not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not (data_dir / "postmaster.pid").exists(), "PostgreSQL was left running"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{first.um.base_url}/ping", timeout=2)

    second = RunningDevstack(data_dir, ports, simulator=True)
    try:
        simulator = f"http://127.0.0.1:{ports['OPENSKY_SIMULATOR_PORT']}"
        assert f"simulator at {simulator}/api" in "".join(second.output)
        assert requests.get(f"{simulator}/_sim/state", timeout=5).ok
        wait_until(lambda: second.um.get(f"/users/{email}").status_code == 200)
    finally:
        second.interrupt()
