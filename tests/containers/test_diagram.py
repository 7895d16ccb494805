"""architecture.png shows the compose stack as it is, and was rendered from its source."""

import re

from devstack.diagram import DOT_SOURCE, PNG_OUTPUT, embedded_digest, source_digest
from tests.containers.deployment import (
    app_services,
    http_port_variable,
    load_compose,
    migration_services,
    service_environment,
)

EDGE = re.compile(r'"(?P<tail>[^"]+)"\s*->\s*"(?P<head>[^"]+)"\s*\[(?P<attrs>[^\]]*)\]')
NODE = re.compile(r'^\s*"(?P<name>[^"]+)"\s*\[', re.MULTILINE)
CLIENT = "client"
GATEWAY = "gateway"
DNS_SCHEME = "dns:///"


def diagram_edges() -> dict[tuple[str, str], str]:
    """Map each (tail, head) edge of the DOT source to its label."""
    edges = {}
    for match in EDGE.finditer(DOT_SOURCE.read_text()):
        label = re.search(r'label="([^"]*)"', match.group("attrs"))
        edges[match.group("tail"), match.group("head")] = label.group(1) if label else ""
    return edges


def has_port(label: str, port: int | str) -> bool:
    return re.search(rf":{port}\b", label) is not None


def test_every_compose_service_is_a_node_of_the_diagram():
    nodes = set(NODE.findall(DOT_SOURCE.read_text()))
    assert set(load_compose()["services"]) <= nodes
    assert {CLIENT, "opensky-api", "opensky-auth"} <= nodes


def test_every_link_of_the_compose_stack_is_drawn_with_its_port():
    compose = load_compose()
    edges = diagram_edges()
    databases = {n for n, spec in compose["services"].items() if "pg_isready" in str(spec)}
    for name in migration_services(compose):
        (database,) = set(compose["services"][name]["depends_on"]) & databases
        assert has_port(edges[name, database], 5432), (name, database)
    for name, spec in compose["services"].items():
        for entry in spec.get("ports", []):
            host_port, container_port = str(entry).split(":")[-2:]
            label = edges[CLIENT, name]
            inside, _, published = label.partition("host")
            assert "REST" in label and has_port(inside, container_port), label
            assert has_port(published, host_port), label
    for name, package in app_services(compose).items():
        spec = compose["services"][name]
        label = edges[GATEWAY, name]
        port = service_environment(spec)[http_port_variable(package)]
        assert "REST" in label and has_port(label, port), label
        for database in set(spec["depends_on"]) & databases:
            assert has_port(edges[name, database], 5432), (name, database)
        for variable, address in service_environment(spec).items():
            if variable.endswith("_GRPC_ADDR"):
                peer, _, port = address.removeprefix(DNS_SCHEME).rpartition(":")
                label = edges[name, peer]
                assert "gRPC" in label and has_port(label, port), (variable, label)
    assert "HTTPS" in edges["data-collector", "opensky-api"]
    assert "token" in edges["data-collector", "opensky-auth"]


def test_architecture_png_was_rendered_from_the_current_source():
    stamped = embedded_digest(PNG_OUTPUT.read_bytes())
    assert stamped == source_digest(), (
        "architecture.png is older than docs/architecture.dot: run `make diagram`"
    )
