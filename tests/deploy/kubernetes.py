"""Read the Kubernetes manifests as the API server and the network would, without a cluster.

The tests in this package render each overlay with ``kubectl kustomize`` and
check the objects. This module holds what they share: rendering, label
selectors, the containers of each workload with their resolved environment
(a setting given as a file, ``<VARIABLE>_FILE``, resolved to the Secret
mounted there), and a small evaluator of NetworkPolicies that says whether
one endpoint may open a connection to another on a port.
"""

import functools
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.containers.deployment import REPO_ROOT, settings_class

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
BASE_DIR = KUBERNETES_DIR / "base"
OVERLAYS_DIR = KUBERNETES_DIR / "overlays"
SECRETS_SCRIPT = KUBERNETES_DIR / "create-secrets.sh"
OVERLAYS = sorted(path.name for path in OVERLAYS_DIR.iterdir() if path.is_dir())
# The kinds of cluster; every other overlay builds on one of them (resources: ../<kind>).
CLUSTER_KINDS = ("local", "production")
NAMESPACE = "flight-tracker"
# The service packages and the names their objects carry (app.kubernetes.io/name).
SERVICES = {
    "user_manager": "user-manager",
    "data_collector": "data-collector",
    "alert_system": "alert-system",
    "alert_notifier": "alert-notifier",
    "sla_detector": "sla-detector",
}
# A setting given as the path of a file that holds its value (common.settings).
FILE_SUFFIX = "_FILE"


@functools.cache
def path_settings() -> frozenset[str]:
    """Settings that are paths in their own right (``API_KEYS_FILE``), not a value's file."""
    return frozenset(
        variable
        for package in SERVICES
        for variable in settings_class(package).variables()
        if variable.endswith(FILE_SUFFIX)
    )


# The one image every service's containers run (common/Dockerfile), the command choosing.
SERVICES_IMAGE = "flight-tracker/services"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Rendering runs kustomize only (no cluster), well under this even on a loaded machine.
RENDER_TIMEOUT_SECONDS = 120


def kubectl() -> str | None:
    """Return the path of kubectl, or None when it is not installed."""
    return shutil.which("kubectl")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """Render ``overlays/<overlay>`` with ``kubectl kustomize`` and return its objects."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS_DIR / overlay)],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@functools.cache
def cluster_kind(overlay: str) -> str:
    """Return the kind of cluster an overlay is for: itself, or the overlay it builds on."""
    if overlay in CLUSTER_KINDS:
        return overlay
    kustomization = yaml.safe_load((OVERLAYS_DIR / overlay / "kustomization.yaml").read_text())
    for resource in kustomization.get("resources") or []:
        parent = Path(resource)
        if parent.parent == Path("..") and (OVERLAYS_DIR / parent.name).is_dir():
            return cluster_kind(parent.name)
    raise AssertionError(f"overlay {overlay} builds on none of {CLUSTER_KINDS}")


def of_kind(objects, kind: str) -> list[dict[str, Any]]:
    """Return the objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def find(objects, kind: str, name: str) -> dict[str, Any]:
    """Return the one object of ``kind`` named ``name`` (fail when absent)."""
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
    return found[0]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Tell whether a label selector (matchLabels and matchExpressions) selects ``labels``.

    An empty selector selects everything; a missing one (None) nothing.
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def service_selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    """Tell whether a Service's selector (a plain map; none selects nothing) picks ``labels``."""
    selector = service["spec"].get("selector")
    return bool(selector) and selector_matches({"matchLabels": selector}, labels)


# --- Workloads and their containers --------------------------------------------------------


def workloads(objects) -> list[dict[str, Any]]:
    """Return every object that runs pods."""
    return [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """Return a workload's pod template (metadata and spec)."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    """Return the labels of a workload's pods."""
    return pod_template(workload)["metadata"].get("labels") or {}


def workload_id(workload: dict[str, Any]) -> str:
    """Name a workload in assertion messages: ``Kind/name``."""
    return f"{workload['kind']}/{workload['metadata']['name']}"


@dataclass(frozen=True)
class Container:
    """One container of a workload's pod, init containers included."""

    workload: dict[str, Any]
    spec: dict[str, Any]
    init: bool

    @property
    def name(self) -> str:
        """The container's name."""
        return self.spec["name"]

    @property
    def pod(self) -> dict[str, Any]:
        """The pod spec the container runs in."""
        return pod_template(self.workload)["spec"]

    @property
    def id(self) -> str:
        """Name the container in assertion messages."""
        kind = "initContainer" if self.init else "container"
        return f"{workload_id(self.workload)} {kind} {self.name}"

    @property
    def package(self) -> str | None:
        """The service package this container runs (``python -m <package> ...``), or None."""
        command = self.spec.get("command") or []
        if command[:2] == ["python", "-m"] and len(command) > 2 and command[2] in SERVICES:
            return command[2]
        return None

    @property
    def ports(self) -> dict[str, int]:
        """The container's ports by name (an unnamed port under its number)."""
        return {
            port.get("name", str(port["containerPort"])): port["containerPort"]
            for port in self.spec.get("ports") or []
        }


def image_name(image: str) -> str:
    """Return an image reference without its tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def containers(objects) -> list[Container]:
    """Return every container (init containers first) of every workload."""
    found = []
    for workload in workloads(objects):
        spec = pod_template(workload)["spec"]
        found += [Container(workload, c, True) for c in spec.get("initContainers") or []]
        found += [Container(workload, c, False) for c in spec["containers"]]
    return found


def postgres_containers(objects) -> list[Container]:
    """Return the containers that run PostgreSQL (the local overlay's databases)."""
    return [c for c in containers(objects) if image_name(c.spec["image"]) == "postgres"]


def app_containers(objects, package: str | None = None) -> list[Container]:
    """Return the containers that run one of the services (or the one given)."""
    return [
        c for c in containers(objects) if c.package and (package is None or c.package == package)
    ]


@dataclass(frozen=True)
class EnvSource:
    """Where one setting of a container gets its value.

    ``secret``: the Secret and key, read from the environment (``secret_file``
    None) or from the file of a mounted Secret (``secret_file``: its path).
    """

    value: str | None = None
    secret: tuple[str, str] | None = None
    optional: bool = False
    config_map: str | None = None
    secret_file: str | None = None
    # The downward API: a field of the pod (``spec.nodeName``).
    field: str | None = None


def raw_env(container: Container, objects) -> dict[str, EnvSource]:
    """The container's environment as Kubernetes sets it: envFrom ConfigMaps, then ``env``."""
    env: dict[str, EnvSource] = {}
    for source in container.spec.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            data = find(objects, "ConfigMap", name).get("data") or {}
            for key, value in data.items():
                env[prefix + key] = EnvSource(value=str(value), config_map=name)
        else:
            raise AssertionError(f"{container.id}: envFrom a Secret hides which keys it sets")
    for variable in container.spec.get("env") or []:
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        field_ref = (variable.get("valueFrom") or {}).get("fieldRef")
        if field_ref:
            env[variable["name"]] = EnvSource(field=field_ref["fieldPath"])
        elif ref:
            env[variable["name"]] = EnvSource(
                secret=(ref["name"], ref["key"]), optional=bool(ref.get("optional"))
            )
        else:
            env[variable["name"]] = EnvSource(value=str(variable.get("value", "")))
    return env


def container_env(container: Container, objects) -> dict[str, EnvSource]:
    """Resolve a container's settings: its environment and its settings given as files.

    Each ``<VARIABLE>_FILE`` that names a file of a mounted Secret adds
    ``<VARIABLE>``, from that Secret's key.
    """
    env = raw_env(container, objects)
    for name, source in list(env.items()):
        if not name.endswith(FILE_SUFFIX) or name in path_settings() or source.value is None:
            continue
        found = secret_file(container, source.value)
        if found is not None:
            secret, key, optional = found
            env[name.removesuffix(FILE_SUFFIX)] = EnvSource(
                secret=(secret, key), optional=optional, secret_file=source.value
            )
    return env


def secret_file(container: Container, path: str) -> tuple[str, str, bool] | None:
    """Return ``(Secret, key, optional)`` of the Secret file a container sees at ``path``."""
    held = mounted_volume(container, path)
    if held is None or "secret" not in held[1]:
        return None
    mount_path, volume = held
    secret = volume["secret"]
    relative = path[len(mount_path.rstrip("/")) + 1 :]
    items = secret.get("items")
    if items is None:
        key = relative
    else:
        keys = [item["key"] for item in items if item.get("path", item["key"]) == relative]
        if not keys:
            return None
        key = keys[0]
    return secret["secretName"], key, bool(secret.get("optional"))


def volume_mounts(container: Container) -> dict[str, dict[str, Any]]:
    """Map each mount path of a container to the pod volume (or claim template) mounted there."""
    volumes = {volume["name"]: volume for volume in container.pod.get("volumes") or []}
    for claim in container.workload["spec"].get("volumeClaimTemplates") or []:
        volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
    return {
        mount["mountPath"]: volumes[mount["name"]]
        for mount in container.spec.get("volumeMounts") or []
    }


def mounted_volume(container: Container, path: str) -> tuple[str, dict[str, Any]] | None:
    """Return ``(mount path, volume)`` of the deepest mount that holds ``path``."""
    holders = [
        (mount_path, volume)
        for mount_path, volume in volume_mounts(container).items()
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/")
    ]
    return max(holders, key=lambda item: len(item[0])) if holders else None


def secret_references(objects) -> set[tuple[str, str | None]]:
    """Every Secret the pods (or the Prometheus Operator's monitors) reference, as ``(name, key)``.

    Key None for a whole volume.

    Optional references are left out: the pods run without them.
    """
    refs = set()
    for container in containers(objects):
        for source in container_env(container, objects).values():
            if source.secret and not source.optional:
                refs.add(source.secret)
    for workload in workloads(objects):
        for volume in pod_template(workload)["spec"].get("volumes") or []:
            secret = volume.get("secret")
            if secret and not secret.get("optional"):
                keys = [item["key"] for item in secret.get("items") or []] or [None]
                refs |= {(secret["secretName"], key) for key in keys}
    for monitor in of_kind(objects, "PodMonitor") + of_kind(objects, "ServiceMonitor"):
        spec = monitor["spec"]
        for endpoint in spec.get("podMetricsEndpoints") or spec.get("endpoints") or []:
            credentials = (endpoint.get("authorization") or {}).get("credentials")
            if credentials:
                refs.add((credentials["name"], credentials["key"]))
    return refs


# --- NetworkPolicies -----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Something that opens or accepts connections: a pod (with a namespace) or an address."""

    name: str
    namespace: str | None
    ip: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: dict[str, int] = field(default_factory=dict, hash=False)


def policy_types(policy: dict[str, Any]) -> list[str]:
    """Return a policy's types, defaulted as the API server does."""
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return spec["policyTypes"]
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


class NetworkModel:
    """Which connections a set of NetworkPolicies allows between known endpoints."""

    def __init__(self, policies: list[dict[str, Any]], namespace_labels: dict[str, dict]):
        self.policies = policies
        self.namespace_labels = {
            name: {"kubernetes.io/metadata.name": name, **labels}
            for name, labels in namespace_labels.items()
        }

    def _peer_matches(self, peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            address = ipaddress.ip_address(other.ip)
            cidr = ipaddress.ip_network(block["cidr"])
            if address.version != cidr.version or address not in cidr:
                return False
            excluded = (ipaddress.ip_network(item) for item in block.get("except") or [])
            return not any(address.version == net.version and address in net for net in excluded)
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            labels = self.namespace_labels.get(other.namespace, {})
            if not selector_matches(peer["namespaceSelector"], labels):
                return False
        elif other.namespace != policy_namespace:
            return False
        return "podSelector" not in peer or selector_matches(peer["podSelector"], other.labels)

    @staticmethod
    def _port_matches(rule: dict[str, Any], protocol: str, port: int, target: Endpoint) -> bool:
        if not rule.get("ports"):
            return True
        for allowed in rule["ports"]:
            if allowed.get("protocol", "TCP") != protocol:
                continue
            if "port" not in allowed:
                return True
            number = allowed["port"]
            if isinstance(number, str):
                number = target.ports.get(number)
                if number is None:
                    continue
            if number <= port <= allowed.get("endPort", number):
                return True
        return False

    def _side_allows(
        self, pod: Endpoint, other: Endpoint, direction: str, protocol: str, port: int, target
    ) -> bool:
        selecting = [
            policy
            for policy in self.policies
            if policy["metadata"]["namespace"] == pod.namespace
            and direction in policy_types(policy)
            and selector_matches(policy["spec"]["podSelector"], pod.labels)
        ]
        if not selecting:
            return True  # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in selecting:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(
                    self._peer_matches(peer, namespace, other) for peer in peers
                )
                if peer_ok and self._port_matches(rule, protocol, port, target):
                    return True
        return False

    def allows(
        self, source: Endpoint, target: Endpoint, protocol: str, port: int, *, side: str = "both"
    ) -> bool:
        """Tell whether ``source`` may connect to ``target`` on ``protocol``/``port``.

        ``side`` "egress" or "ingress" asks what that side's policies alone allow:
        each side must be right by itself, not only thanks to the other.
        """
        egress = self._side_allows(source, target, "Egress", protocol, port, target)
        ingress = self._side_allows(target, source, "Ingress", protocol, port, target)
        return {"egress": egress, "ingress": ingress, "both": egress and ingress}[side]


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Return the YAML documents of a file (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
