"""``make test-containers`` checked without an engine: with none, it runs nothing.

Its parts hold too: the test stack's file, the simulator's image, the
readers of the gateway's log and of the simulator's calls. The run itself
needs a Docker engine and takes minutes; ``make test`` never starts it.
"""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from tests.containers.deployment import (
    REPO_ROOT,
    SERVICES_DOCKERFILE,
    dockerfile_instructions,
    dockerignore_allows,
    dockerignore_patterns,
    image_runs,
    interpolate,
    load_compose,
    parse_nginx,
)
from tests.containers.drills import (
    CYCLE_GAP_SECONDS,
    EMAIL_IN_LOG,
    DrillResult,
    analyse_collection,
    answered_by,
    cycles_by_outcome,
    markdown_table,
)

TEST_STACK = REPO_ROOT / "deploy" / "compose" / "test-stack.yml"
SIMULATOR_DOCKERFILE = REPO_ROOT / "opensky_sim" / "Dockerfile"


def run_drills(path: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.containers.drills"],
        cwd=REPO_ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_docker(directory: Path, *, exit_code: int) -> Path:
    """A ``docker`` that records its arguments and fails like a client without an engine."""
    directory.mkdir()
    calls = directory / "calls.log"
    script = directory / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return calls


def test_without_an_engine_it_says_why_and_exits_0_having_run_nothing(tmp_path):
    calls = fake_docker(tmp_path / "bin", exit_code=1)
    result = run_drills(f"{tmp_path / 'bin'}:/usr/bin:/bin", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no Docker engine answers" in result.stdout
    assert "Cannot connect to the Docker daemon" in result.stdout, "it says why"
    assert calls.read_text().split("\n")[:-1] == ["info --format {{.ServerVersion}}"]


def test_without_docker_at_all_it_exits_0_too(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    python_only = f"{empty}:{Path(sys.executable).parent}"
    result = subprocess.run(
        [sys.executable, "-c", "import shutil, sys; print(shutil.which('docker'))"],
        env={"PATH": python_only},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "None"
    result = run_drills(python_only, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "docker command is not installed" in result.stdout


def test_make_test_containers_runs_the_drills_and_make_test_does_not():
    makefile = (REPO_ROOT / "Makefile").read_text()
    target = re.search(r"^test-containers:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert target and "-m tests.containers.drills" in target.group(1)
    assert re.search(r"^\.PHONY:.*\btest-containers\b", makefile, re.MULTILINE)
    plain = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    assert "drills" not in plain and "test-containers" not in plain
    # Not collected by pytest either: the drills are a module, not a test file.
    assert not Path(__file__).with_name("drills.py").name.startswith("test_")


def test_the_test_stack_adds_the_simulator_and_changes_no_service_setting():
    override = yaml.safe_load(TEST_STACK.read_text())
    services = override["services"]
    simulator = services["opensky-sim"]
    assert simulator["build"] == {"context": ".", "dockerfile": "opensky_sim/Dockerfile"}
    assert simulator["networks"] == ["services"]
    rendered = interpolate(
        " ".join(simulator["ports"]),
        {"OPENSKY_SIMULATOR_PORT": "6003", "SIMULATOR_CLIENT_SECRET": "x"},
    )
    assert rendered == "127.0.0.1:6003:9000", "the control API on loopback only"
    base = load_compose()
    runners = image_runs(base)
    assert set(services) == {"opensky-sim", *runners}, "every runner of the image, renamed"
    for name in runners:
        # Only the image name (shared by runs) and the order of start: the run changes
        # settings through the variables docker-compose.yml passes on, never here.
        assert set(services[name]) <= {"image", "depends_on"}, name
        assert "build" in base["services"][name]
        assert "ports" not in services[name]
    # One image for all, under a name of its own: a test run never replaces the one a
    # `docker compose up --build` made.
    (test_image,) = {services[name]["image"] for name in runners}
    assert test_image != base["services"]["user-manager"]["image"]
    # Locked down as the stack's own containers are.
    assert simulator["read_only"] is True and simulator["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in simulator["security_opt"]
    assert simulator["mem_limit"] and any(str(t).startswith("/tmp:") for t in simulator["tmpfs"])


def test_the_simulator_has_its_own_image_and_no_service_image_contains_it():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(SIMULATOR_DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert dockerignore_allows("opensky_sim/app.py", dockerignore_patterns())
    copied = " ".join(
        i.args
        for i in dockerfile_instructions(REPO_ROOT / SERVICES_DOCKERFILE)
        if i.keyword == "COPY"
    )
    assert "opensky_sim" not in copied
    # Of the local stack, the mail catcher alone (compose's mail server).
    assert set(re.findall(r"devstack/\S*", copied)) == {
        "devstack/__init__.py",
        "devstack/mailcatcher.py",
        "devstack/",
    }
    assert " . " not in f" {copied} ", "a COPY of the whole context would take the simulator"


def call(started_at: float, endpoint: str = "arrival", airport="LIRF", begin=0, end=1) -> dict:
    return {
        "endpoint": endpoint,
        "params": {"airport": airport, "begin": begin, "end": end},
        "started_at": started_at,
    }


def test_the_collection_analysis_counts_cycles_and_repeated_ranges():
    period = 60
    calls = [call(0.0, "token")]
    for cycle in range(3):
        at = cycle * period
        calls += [
            call(at, "arrival", "LIRF", at, at + 1),
            call(at + 0.1, "departure", "LIRF", at, at + 1),
            call(at + 0.2, "arrival", "EGLL", at, at + 1),
        ]
    figures = analyse_collection(calls)
    assert (figures.cycles, figures.fetches) == (3, 9)
    assert figures.most_fetches_of_one_range_in_a_cycle == 1
    assert figures.ranges_fetched_twice == 0
    assert figures.shortest_gap_seconds == period

    # A second worker fetching the same range in the same cycle, and a range fetched again.
    calls.append(call(period + 0.5, "arrival", "LIRF", period, period + 1))
    calls.append(call(2 * period + 1, "arrival", "EGLL", 0, 1))
    figures = analyse_collection(calls)
    assert figures.most_fetches_of_one_range_in_a_cycle == 2
    assert figures.ranges_fetched_twice == 2
    # Calls further apart than the gap are separate cycles.
    apart = analyse_collection([call(0), call(CYCLE_GAP_SECONDS + 1)])
    assert apart.cycles == 2


def test_the_table_says_pass_or_what_failed():
    good = DrillResult("a", "did a", figures=["1 thing", "2 things"])
    bad = DrillResult("b", "did b|c")
    bad.check(False, "it broke")
    table = markdown_table([good, bad]).splitlines()
    assert table[0] == "| drill | what was done | figures | result |"
    assert table[2] == "| a | did a | 1 thing; 2 things | pass |"
    assert table[3] == "| b | did b/c |  | FAIL: it broke |"


def test_the_gateway_log_is_read_as_it_is_written():
    """The drills find which replica answered in the line the gateway's log_format writes."""
    template = (REPO_ROOT / "deploy" / "compose" / "gateway" / "default.conf.template").read_text()
    (log_format,) = parse_nginx(template).all("log_format")
    assert log_format.args[0] == "gateway"
    values = {
        "remote_addr": "172.20.0.1",
        "gateway_logged_method": "GET",
        "gateway_logged_path": "/ping",
        "server_protocol": "HTTP/1.1",
        "status": "200",
        "body_bytes_sent": "18",
        "request_time": "0.012",
        "upstream_status": "502, 200",
        "upstream_response_time": "0.001, 0.010",
        "limit_req_status": "PASSED",
        "limit_conn_status": "PASSED",
    }

    def line(request_id: str, upstream: str) -> str:
        given = {**values, "forwarded_request_id": request_id, "upstream_addr": upstream}
        return re.sub(r"\$(\w+)", lambda m: given[m.group(1)], "".join(log_format.args[1:]))

    log = "\n".join(
        [
            line("drill-a-1", "172.20.0.4:5001"),
            line("drill-a-2", "172.20.0.5:5001, 172.20.0.4:5001"),
            line("other-3", "172.20.0.6:5001"),
            line("drill-a-4", "-"),
        ]
    )
    assert answered_by(log, "drill-a-") == {"172.20.0.4": 2, "-": 1}


def test_the_drill_finds_an_email_in_the_gateway_log_however_it_is_written():
    masked = '172.20.0.1 "GET /users/<email> HTTP/1.1" 200 18 0.012 request_id=a'
    assert not EMAIL_IN_LOG.findall(masked)
    for path in ("/users/mario.rossi@example.com", "/users/mario.rossi%40example.com"):
        assert EMAIL_IN_LOG.findall(masked.replace("/users/<email>", path)), path
    error_line = 'request: "GET /flights?email=a.b+c@example.co.uk HTTP/1.1"'
    assert EMAIL_IN_LOG.findall(error_line)


def test_cycles_are_counted_from_labelled_metrics():
    """Every sample carries service and node besides outcome; none is missed for them."""
    text = (
        "# TYPE collection_cycles_total counter\n"
        'collection_cycles_total{node="n1",outcome="done",service="data_collector"} 3.0\n'
        'collection_cycles_total{node="n1",outcome="busy",service="data_collector"} 2.0\n'
        'collection_cycles_created{node="n1",outcome="done",service="data_collector"} 1.7e9\n'
    )
    assert cycles_by_outcome(text) == {"done": 3, "busy": 2}
