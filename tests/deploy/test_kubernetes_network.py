"""NetworkPolicies evaluated: exactly the agreed paths are open, in every overlay.

Each overlay's policies are applied to a set of endpoints (the rendered pods,
plus the ingress controller, the cluster DNS, pods of other namespaces,
public and private addresses, and the production databases) and every
connection between them on the ports that matter is tried. The allowed set
must equal the expected one: a missing path and an extra one both fail.
"""

import ipaddress
import itertools

import pytest

from tests.deploy.kubernetes import (
    COMPONENT_LABEL,
    NAME_LABEL,
    NAMESPACE,
    Endpoint,
    NetworkModel,
    cluster_kind,
    containers,
    of_kind,
    pod_labels,
    workloads,
)

INGRESS_NAMESPACE = "ingress-nginx"
# Where the production overlay expects each service's database (CloudNativePG pods).
DATABASE_NAMESPACE = "flight-tracker-db"
# Where the production overlay expects Prometheus (the Prometheus Operator's).
MONITORING_NAMESPACE = "monitoring"
# Documentation addresses (never contacted: the model only compares them to CIDRs).
PUBLIC_IPV4, PUBLIC_IPV6 = "203.0.113.10", "2001:db8::10"
TCP_PORTS = [
    22,
    25,
    53,
    80,
    443,
    465,
    587,
    1025,
    4222,
    5001,
    5002,
    5004,
    5005,
    5006,
    5432,
    6222,
    6443,
    8443,
    9090,
    8000,
    8025,
    8222,
    50051,
    50052,
]
UDP_PORTS = [53, 443]
BROKER = "nats/broker"
# A second server of the broker's cluster (production): the routes between them.
OTHER_BROKER = "nats/broker-2"
# The services that publish or consume on the broker.
BROKER_CLIENTS = {
    "data-collector/server",
    "data-collector/worker",
    "alert-system/server",
    "alert-notifier/server",
    "sla-detector/server",
}
# The ports a mail server takes email on.
SMTP_PORTS = (25, 465, 587)
# Where Prometheus scrapes each service: the REST port of its serving pods (/metrics).
METRICS_PORTS = {
    "user-manager/server": 5001,
    "data-collector/server": 5002,
    "alert-system/server": 5004,
    "alert-notifier/server": 5005,
    "sla-detector/server": 5006,
}
# The local overlay's Prometheus, and the Kubernetes API it finds the pods through: an API
# server is at a private address, on one of these ports (the `kubernetes` Service; kind,
# k3s and kubeadm; minikube).
LOCAL_PROMETHEUS = "prometheus/monitoring"
API_SERVER_PORTS = (443, 6443, 8443)
PRIVATE_NETWORKS = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
]
# The overlays whose services the Prometheus Operator's Prometheus (in namespace
# monitoring) scrapes.
SCRAPED_BY_THE_OPERATOR = {"production-monitoring"}

OUTSIDE = [
    Endpoint(
        "ingress-controller",
        INGRESS_NAMESPACE,
        "10.244.9.1",
        {"app.kubernetes.io/name": "ingress-nginx"},
    ),
    Endpoint("kube-dns", "kube-system", "10.244.9.2", {"k8s-app": "kube-dns"}),
    Endpoint("pod-of-another-namespace", "default", "10.244.9.3", {"app": "stranger"}),
    # A Prometheus, but not the one agreed on: neither ours nor in namespace monitoring.
    Endpoint(
        "prometheus-of-another-namespace",
        "default",
        "10.244.9.5",
        {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "monitoring"},
    ),
    # A pod started by hand in our namespace, with labels of no workload of ours.
    Endpoint("unlabelled-pod", NAMESPACE, "10.244.9.4", {"app": "debug"}),
    Endpoint("internet", None, PUBLIC_IPV4),
    Endpoint("internet-v6", None, PUBLIC_IPV6),
    Endpoint("node", None, "10.0.0.5"),
    # The API server as kind runs it (a container's address), and the `kubernetes` Service.
    Endpoint("api-server", None, "172.18.0.2"),
    Endpoint("kubernetes-service", None, "10.96.0.1"),
    Endpoint("cloud-metadata", None, "169.254.169.254"),
    Endpoint("private-v6", None, "fd00::5"),
]
PRODUCTION_DATABASES = [
    Endpoint("user-db", DATABASE_NAMESPACE, "10.244.8.1", {"cnpg.io/cluster": "user-db"}),
    Endpoint("data-db", DATABASE_NAMESPACE, "10.244.8.2", {"cnpg.io/cluster": "data-db"}),
    Endpoint("alert-db", DATABASE_NAMESPACE, "10.244.8.4", {"cnpg.io/cluster": "alert-db"}),
    Endpoint("notifier-db", DATABASE_NAMESPACE, "10.244.8.5", {"cnpg.io/cluster": "notifier-db"}),
    Endpoint("sla-db", DATABASE_NAMESPACE, "10.244.8.6", {"cnpg.io/cluster": "sla-db"}),
    # The Prometheus Operator's Prometheus, which the SLA detector asks.
    Endpoint(
        "monitoring-prometheus",
        MONITORING_NAMESPACE,
        "10.244.7.1",
        {"app.kubernetes.io/name": "prometheus"},
    ),
    Endpoint("other-db", DATABASE_NAMESPACE, "10.244.8.3", {"cnpg.io/cluster": "other-db"}),
]


def endpoint_name(labels: dict[str, str]) -> str:
    """Name a pod by its role: ``user-manager/server``; a database by its name alone."""
    if labels.get(COMPONENT_LABEL) == "database":
        return labels[NAME_LABEL]
    return f"{labels[NAME_LABEL]}/{labels[COMPONENT_LABEL]}"


def endpoints(objects, overlay: str) -> list[Endpoint]:
    """The rendered pods (one per workload) and the world around them."""
    found = []
    for number, workload in enumerate(workloads(objects), start=1):
        ports = {}
        for container in containers(objects):
            if container.workload is workload:
                ports |= container.ports
        labels = pod_labels(workload)
        found.append(
            Endpoint(endpoint_name(labels), NAMESPACE, f"10.244.0.{number}", labels, ports)
        )
        if workload["spec"].get("replicas", 1) > 1 and endpoint_name(labels) == BROKER:
            found.append(Endpoint(OTHER_BROKER, NAMESPACE, "10.244.0.99", labels, ports))
    extra = PRODUCTION_DATABASES if cluster_kind(overlay) == "production" else []
    return found + OUTSIDE + extra


def model(objects) -> NetworkModel:
    (namespace,) = of_kind(objects, "Namespace")
    return NetworkModel(
        of_kind(objects, "NetworkPolicy"),
        {
            NAMESPACE: namespace["metadata"].get("labels") or {},
            INGRESS_NAMESPACE: {},
            "kube-system": {},
            "default": {},
            DATABASE_NAMESPACE: {},
            MONITORING_NAMESPACE: {},
        },
    )


def governed(source: Endpoint, target: Endpoint, side: str) -> bool:
    """Tell whether our policies decide this connection on ``side``."""
    if side == "egress":
        return source.namespace == NAMESPACE
    if side == "ingress":
        return target.namespace == NAMESPACE
    return NAMESPACE in (source.namespace, target.namespace)


def allowed_connections(network: NetworkModel, known: list[Endpoint], side="both") -> set[tuple]:
    """Every (source, target, protocol, port) our policies allow, on one side or both."""
    allowed = set()
    ports = [("TCP", p) for p in TCP_PORTS] + [("UDP", p) for p in UDP_PORTS]
    for source, target in itertools.permutations(known, 2):
        if not governed(source, target, side):
            continue
        for protocol, port in ports:
            if network.allows(source, target, protocol, port, side=side):
                allowed.add((source.name, target.name, protocol, port))
    return allowed


def private(endpoint: Endpoint) -> bool:
    """Tell whether an endpoint's address is in a private IPv4 range."""
    address = ipaddress.ip_address(endpoint.ip)
    return address.version == 4 and any(address in network for network in PRIVATE_NETWORKS)


def expected_connections(known: list[Endpoint], overlay: str, side: str = "both") -> set[tuple]:
    """The agreed paths of an overlay; ``side`` "egress" adds what egress alone lets through.

    The local Prometheus's way to the API server is any private address on the API
    server's ports: its egress alone lets it try the pods of this namespace there too,
    whose ingress policies refuse.
    """
    user_manager = {"user-manager/server", "user-manager/worker"}
    data_collector = {"data-collector/server", "data-collector/worker"}
    names = {endpoint.name for endpoint in known}
    expected = {
        ("ingress-controller", "user-manager/server", "TCP", 5001),
        ("ingress-controller", "data-collector/server", "TCP", 5002),
        ("data-collector/worker", "internet", "TCP", 443),
        ("data-collector/worker", "internet-v6", "TCP", 443),
        ("alert-system/server", "alert-db", "TCP", 5432),
        ("alert-notifier/server", "notifier-db", "TCP", 5432),
        ("sla-detector/server", "sla-db", "TCP", 5432),
    }
    expected |= {(client, BROKER, "TCP", 4222) for client in BROKER_CLIENTS}
    if OTHER_BROKER in names:
        # A cluster: the servers' routes, and the clients reach every server.
        expected |= {(client, OTHER_BROKER, "TCP", 4222) for client in BROKER_CLIENTS}
        expected |= {(BROKER, OTHER_BROKER, "TCP", 6222), (OTHER_BROKER, BROKER, "TCP", 6222)}
    if "monitoring-prometheus" in names:
        expected.add(("sla-detector/server", "monitoring-prometheus", "TCP", 9090))
    if overlay in SCRAPED_BY_THE_OPERATOR:
        expected |= {
            ("monitoring-prometheus", pod, "TCP", port) for pod, port in METRICS_PORTS.items()
        }
    if LOCAL_PROMETHEUS in names:
        expected.add(("sla-detector/server", LOCAL_PROMETHEUS, "TCP", 9090))
        expected |= {(LOCAL_PROMETHEUS, pod, "TCP", port) for pod, port in METRICS_PORTS.items()}
        expected |= {
            (LOCAL_PROMETHEUS, target.name, "TCP", port)
            for target in known
            if private(target)
            and target.name != LOCAL_PROMETHEUS
            and (side == "egress" or target.namespace != NAMESPACE)
            for port in API_SERVER_PORTS
        }
    if "mail-catcher/mail" in names:
        expected.add(("alert-notifier/server", "mail-catcher/mail", "TCP", 1025))
    else:
        # A mail server outside: any public address, on the mail ports.
        expected |= {
            ("alert-notifier/server", internet, "TCP", port)
            for internet in ("internet", "internet-v6")
            for port in SMTP_PORTS
        }
    for source in user_manager:
        expected |= {
            (source, "user-db", "TCP", 5432),
            (source, "data-collector/server", "TCP", 50052),
        }
    for source in data_collector:
        expected |= {
            (source, "data-db", "TCP", 5432),
            (source, "user-manager/server", "TCP", 50051),
        }
    for source in known:
        if source.namespace == NAMESPACE:
            expected |= {(source.name, "kube-dns", "UDP", 53), (source.name, "kube-dns", "TCP", 53)}
    return expected


def test_the_network_model_sees_every_role_of_the_stack(objects, overlay):
    names = {endpoint.name for endpoint in endpoints(objects, overlay)}
    assert names >= {
        "user-manager/server",
        "user-manager/worker",
        "data-collector/server",
        "data-collector/worker",
        "alert-system/server",
        "alert-notifier/server",
        "sla-detector/server",
        BROKER,
        "user-db",
        "data-db",
        "alert-db",
        "notifier-db",
        "sla-db",
    }
    assert (OTHER_BROKER in names) == (cluster_kind(overlay) == "production"), "production only"
    # Its own Prometheus in local; production's is the Operator's, outside the namespace.
    assert (LOCAL_PROMETHEUS in names) == (cluster_kind(overlay) == "local")


@pytest.mark.parametrize("side", ["both", "egress", "ingress"])
def test_network_policies_open_exactly_the_agreed_paths(objects, overlay, side):
    """Check connections as a whole, and each side of them alone.

    A database must refuse a pod of the wrong service even though that pod's own
    egress policy would already stop it.
    """
    known = endpoints(objects, overlay)
    by_name = {endpoint.name: endpoint for endpoint in known}
    allowed = allowed_connections(model(objects), known, side)
    expected = {
        path
        for path in expected_connections(known, overlay, side)
        if governed(by_name[path[0]], by_name[path[1]], side)
    }
    missing = sorted(expected - allowed)
    extra = sorted(allowed - expected)
    assert not missing and not extra, f"blocked but needed: {missing}\nopen but not agreed: {extra}"


def test_without_the_default_deny_the_model_finds_open_paths(objects, overlay):
    """The evaluator itself must notice a policy set that is too open."""
    known = endpoints(objects, overlay)
    policies = [p for p in of_kind(objects, "NetworkPolicy") if p["spec"]["podSelector"]]
    network = model(objects)
    network.policies = policies
    extra = allowed_connections(network, known) - expected_connections(known, overlay)
    assert ("pod-of-another-namespace", "user-manager/worker", "TCP", 8000) in extra


@pytest.mark.parametrize(
    ("source", "target", "protocol", "port"),
    [
        ("internet", "user-manager/server", "TCP", 5001),
        ("ingress-controller", "user-manager/server", "TCP", 50051),
        ("user-manager/server", "data-db", "TCP", 5432),
        ("data-collector/server", "user-db", "TCP", 5432),
        ("unlabelled-pod", "user-db", "TCP", 5432),
        ("data-collector/server", "internet", "TCP", 443),
        ("data-collector/worker", "cloud-metadata", "TCP", 443),
        ("data-collector/worker", "node", "TCP", 443),
        ("data-collector/worker", "private-v6", "TCP", 443),
        ("user-manager/worker", "internet", "TCP", 443),
        ("pod-of-another-namespace", "data-collector/server", "TCP", 50052),
        # Only the services that publish or consume reach the broker, and nothing it.
        ("user-manager/server", BROKER, "TCP", 4222),
        ("pod-of-another-namespace", BROKER, "TCP", 4222),
        ("unlabelled-pod", BROKER, "TCP", 4222),
        (BROKER, "internet", "TCP", 443),
        # The alert services: their own database, the notifier its mail server, no more.
        ("alert-system/server", "notifier-db", "TCP", 5432),
        ("alert-notifier/server", "alert-db", "TCP", 5432),
        ("alert-system/server", "internet", "TCP", 25),
        ("alert-notifier/server", "cloud-metadata", "TCP", 25),
        ("alert-notifier/server", "internet", "TCP", 443),
        ("alert-system/server", "user-manager/server", "TCP", 50051),
        ("ingress-controller", "alert-system/server", "TCP", 5004),
        # The SLA detector: its own database, and no way to the others or the internet.
        ("sla-detector/server", "notifier-db", "TCP", 5432),
        ("sla-detector/server", "internet", "TCP", 443),
        ("ingress-controller", "sla-detector/server", "TCP", 5006),
    ],
)
def test_paths_that_must_stay_closed(objects, overlay, source, target, protocol, port):
    known = {endpoint.name: endpoint for endpoint in endpoints(objects, overlay)}
    assert not model(objects).allows(known[source], known[target], protocol, port)


def test_production_reaches_only_its_own_databases_in_the_database_namespace(objects, overlay):
    if cluster_kind(overlay) != "production":
        pytest.skip("the production overlay's databases live outside the cluster's namespace")
    known = {endpoint.name: endpoint for endpoint in endpoints(objects, overlay)}
    network = model(objects)
    for source in (
        "user-manager/server",
        "data-collector/server",
        "alert-system/server",
        "alert-notifier/server",
        "sla-detector/server",
    ):
        assert not network.allows(known[source], known["other-db"], "TCP", 5432)


@pytest.mark.parametrize(
    ("source", "target", "port"),
    [
        # Scrapes reach /metrics, on the REST port, and nothing else of the services.
        (LOCAL_PROMETHEUS, "user-manager/server", 50051),
        (LOCAL_PROMETHEUS, "user-manager/worker", 5001),
        (LOCAL_PROMETHEUS, "data-collector/server", 5001),
        (LOCAL_PROMETHEUS, "user-db", 5432),
        (LOCAL_PROMETHEUS, "nats/broker", 8222),
        (LOCAL_PROMETHEUS, "mail-catcher/mail", 8025),
        # The API server's ports at private addresses only: not the internet nor the cloud
        # metadata endpoint.
        (LOCAL_PROMETHEUS, "internet", 443),
        (LOCAL_PROMETHEUS, "cloud-metadata", 443),
        (LOCAL_PROMETHEUS, "api-server", 22),
        # Only the SLA detector asks Prometheus; no other pod may scrape the services.
        ("user-manager/server", LOCAL_PROMETHEUS, 9090),
        ("unlabelled-pod", LOCAL_PROMETHEUS, 9090),
        ("prometheus-of-another-namespace", "user-manager/server", 5001),
        ("sla-detector/server", "user-manager/server", 5001),
    ],
)
def test_the_local_prometheus_reaches_metrics_and_the_api_server_only(
    objects, overlay, source, target, port
):
    if cluster_kind(overlay) != "local":
        pytest.skip("Prometheus runs in the namespace in the local overlay only")
    known = {endpoint.name: endpoint for endpoint in endpoints(objects, overlay)}
    assert not model(objects).allows(known[source], known[target], "TCP", port)


def test_only_the_operator_s_prometheus_scrapes_production(objects, overlay):
    if overlay not in SCRAPED_BY_THE_OPERATOR:
        pytest.skip("the Operator's Prometheus scrapes the production-monitoring overlay only")
    known = {endpoint.name: endpoint for endpoint in endpoints(objects, overlay)}
    network = model(objects)
    assert network.allows(known["monitoring-prometheus"], known["user-manager/server"], "TCP", 5001)
    for source, target, port in [
        ("monitoring-prometheus", "user-manager/server", 50051),
        ("monitoring-prometheus", "user-manager/worker", 5001),
        ("monitoring-prometheus", "user-manager/server", 5002),
        ("prometheus-of-another-namespace", "user-manager/server", 5001),
    ]:
        assert not network.allows(known[source], known[target], "TCP", port), (source, target)
