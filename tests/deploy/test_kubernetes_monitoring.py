"""Prometheus in the Kubernetes overlays: who is scraped, with which key and labels, which rules.

The local overlay runs a Prometheus of its own; production-monitoring hands the
Prometheus Operator a PodMonitor and a PrometheusRule. Without a cluster, the
scrape configuration's relabelling is applied here to the targets Kubernetes
service discovery would give for the rendered pods (one per container port),
so the test sees which ports are scraped and which labels the series get. The
Operator's custom resources have no built-in schema: they are validated
against the minimal schemas below (the fields these manifests use, no other).
"""

import re
from typing import Any

import jsonschema
import pytest
import yaml

from devstack.prometheus import RULES_FILE, prometheus_rule
from tests.deploy.kubernetes import (
    NAME_LABEL,
    NAMESPACE,
    OVERLAYS_DIR,
    SERVICES,
    app_containers,
    cluster_kind,
    container_env,
    containers,
    find,
    mounted_volume,
    of_kind,
    pod_labels,
    pod_template,
    secret_file,
    selector_matches,
    service_selects,
    workload_id,
    workloads,
)
from tests.utils import promtool

PROMETHEUS = "prometheus"
PROMETHEUS_CONFIG = "prometheus.yml"
PROMETHEUS_KEY = ("prometheus-api-key", "api-key")
PROMETHEUS_RULE_FILE = OVERLAYS_DIR / "production-monitoring" / "prometheus-rule.yaml"
# The node every pod of the discovery below runs on.
NODE = "node-1"
OPERATOR_API_VERSION = "monitoring.coreos.com/v1"

# --- Minimal schemas of the Operator's resources: what these manifests use -------------------

DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
LABEL_NAMES = {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "additionalProperties": False,
}


def custom_resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A schema for one kind of the Operator's: its apiVersion, metadata and ``spec``."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": OPERATOR_API_VERSION},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


RELABELING = {
    "type": "object",
    "properties": {
        "sourceLabels": LABEL_NAMES,
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "action": {"enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"]},
    },
    "additionalProperties": False,
}
SCHEMAS = {
    "PodMonitor": custom_resource(
        "PodMonitor",
        {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": STRING_MAP,
                        "matchExpressions": {"type": "array"},
                    },
                    "additionalProperties": False,
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                            "honorLabels": {"type": "boolean"},
                            "authorization": {
                                "type": "object",
                                "required": ["credentials"],
                                "properties": {
                                    "type": {"const": "Bearer"},
                                    "credentials": {
                                        "type": "object",
                                        "required": ["name", "key"],
                                        "properties": {
                                            "name": {"type": "string"},
                                            "key": {"type": "string"},
                                        },
                                        "additionalProperties": False,
                                    },
                                },
                                "additionalProperties": False,
                            },
                            "relabelings": {"type": "array", "items": RELABELING},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    ),
    "PrometheusRule": custom_resource(
        "PrometheusRule",
        {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": DURATION,
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    ),
}


def test_the_operator_s_resources_match_their_schemas(objects):
    operator_objects = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    for obj in operator_objects:
        assert obj["kind"] in SCHEMAS, f"no schema for {obj['kind']}: add one here"
        jsonschema.validate(obj, SCHEMAS[obj["kind"]])


def test_the_minimal_schemas_refuse_a_misspelt_field():
    """The schemas must catch what a strict API schema would: an unknown field, a bad value."""
    rule = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text())
    rule["metadata"]["namespace"] = NAMESPACE
    jsonschema.validate(rule, SCHEMAS["PrometheusRule"])
    rule["spec"]["groups"][0]["rules"][0]["fro"] = "5m"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, SCHEMAS["PrometheusRule"])
    monitor = yaml.safe_load(
        (OVERLAYS_DIR / "production-monitoring" / "pod-monitor.yaml").read_text()
    )
    monitor["metadata"]["namespace"] = NAMESPACE
    jsonschema.validate(monitor, SCHEMAS["PodMonitor"])
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SCHEMAS["PodMonitor"])


# --- Where each overlay's Prometheus comes from ------------------------------------------------


def test_each_overlay_has_one_prometheus_that_scrapes_and_evaluates_the_rules(objects, overlay):
    prometheus_pods = [w for w in workloads(objects) if pod_labels(w).get(NAME_LABEL) == PROMETHEUS]
    monitors = of_kind(objects, "PodMonitor") + of_kind(objects, "ServiceMonitor")
    rules = of_kind(objects, "PrometheusRule")
    if cluster_kind(overlay) == "local":
        assert len(prometheus_pods) == 1 and not monitors and not rules
    elif overlay == "production":
        # The plain production overlay leaves Prometheus to you (production-monitoring: the
        # Operator's); its SLA detector asks the one PROMETHEUS_URL names.
        assert not prometheus_pods and not monitors and not rules
    else:
        assert not prometheus_pods and len(monitors) == 1 and len(rules) == 1


def local_prometheus(objects):
    """The local overlay's Prometheus container, its configuration and its rules (as text)."""
    if not [w for w in workloads(objects) if pod_labels(w).get(NAME_LABEL) == PROMETHEUS]:
        pytest.skip("this overlay runs no Prometheus of its own")
    (container,) = [
        c for c in containers(objects) if pod_labels(c.workload).get(NAME_LABEL) == PROMETHEUS
    ]
    files = {}
    for mount_path, volume in volume_mounts_of(container).items():
        if "configMap" in volume:
            data = find(objects, "ConfigMap", volume["configMap"]["name"])["data"]
            files |= {f"{mount_path}/{name}": text for name, text in data.items()}
    (config_arg,) = [a for a in container.spec["args"] if a.startswith("--config.file=")]
    config_path = config_arg.removeprefix("--config.file=")
    config = yaml.safe_load(files[config_path])
    return container, config, files


def volume_mounts_of(container) -> dict[str, dict[str, Any]]:
    volumes = {volume["name"]: volume for volume in container.pod.get("volumes") or []}
    return {m["mountPath"]: volumes[m["name"]] for m in container.spec.get("volumeMounts") or []}


def test_the_local_rules_are_the_rules_every_deployment_loads(objects):
    _, config, files = local_prometheus(objects)
    (rules_path,) = config["rule_files"]
    assert files[rules_path] == RULES_FILE.read_text(), (
        "overlays/local/prometheus/rules.yml is stale: cp deploy/prometheus/rules.yml "
        "deploy/kubernetes/overlays/local/prometheus/rules.yml"
    )


def test_the_prometheus_rule_holds_exactly_the_rules_groups(objects):
    for rule in of_kind(objects, "PrometheusRule"):
        assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
    assert PROMETHEUS_RULE_FILE.read_text() == prometheus_rule(), (
        f"{PROMETHEUS_RULE_FILE.name} is stale: python -m devstack.prometheus prometheus-rule "
        f"> {PROMETHEUS_RULE_FILE.relative_to(OVERLAYS_DIR.parents[2])}"
    )


def test_the_local_prometheus_sends_the_key_of_its_secret_and_asks_the_namespace_only(objects):
    container, config, _ = local_prometheus(objects)
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    key_file = job["authorization"]["credentials_file"]
    assert job["authorization"].get("type", "Bearer") == "Bearer"
    assert secret_file(container, key_file)[:2] == PROMETHEUS_KEY, key_file
    assert mounted_volume(container, key_file)[0] != "/tmp"
    # Samples' own service and node are kept (they carry the same values).
    assert job["honor_labels"] is True
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    assert discovery["namespaces"] == {"own_namespace": True}


def sla_detector_setting(objects, name: str) -> str:
    (worker,) = [c for c in app_containers(objects, "sla_detector") if c.name == "worker"]
    return container_env(worker, objects)[name].value


def test_the_scrape_interval_is_the_one_the_sla_detector_is_told(objects, overlay):
    """T_check is refused below five scrape intervals: the detector must know the real one."""
    if overlay == "production":
        pytest.skip("the plain production overlay leaves the interval to your Prometheus")
    told = f"{sla_detector_setting(objects, 'PROMETHEUS_SCRAPE_SECONDS')}s"
    intervals = [endpoint["interval"] for endpoint in pod_monitor_endpoints(objects)]
    if cluster_kind(overlay) == "local":
        _, config, _ = local_prometheus(objects)
        intervals.append(config["global"]["scrape_interval"])
    assert intervals and set(intervals) == {told}


def test_the_sla_detector_asks_the_local_prometheus_through_its_service(objects):
    container, _, _ = local_prometheus(objects)
    url = sla_detector_setting(objects, "PROMETHEUS_URL")
    match = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", url)
    assert match, url
    name, namespace, port = match.group(1), match.group(2), int(match.group(3))
    assert namespace == NAMESPACE
    service = find(objects, "Service", name)
    assert service_selects(service, pod_labels(container.workload))
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert container.ports[service_port["targetPort"]] == 9090
    assert "--web.listen-address=0.0.0.0:9090" in container.spec["args"]


def test_only_prometheus_reads_the_api_and_only_the_pods_of_its_namespace(objects, overlay):
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    with_token = [
        w
        for w in workloads(objects)
        if pod_template(w)["spec"].get("automountServiceAccountToken") is not False
    ]
    if cluster_kind(overlay) != "local":
        assert not with_token and not of_kind(objects, "Role")
        return
    (workload,) = with_token
    assert pod_labels(workload)[NAME_LABEL] == PROMETHEUS, workload_id(workload)
    account = pod_template(workload)["spec"]["serviceAccountName"]
    assert find(objects, "ServiceAccount", account)["automountServiceAccountToken"] is False
    (binding,) = of_kind(objects, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]
    role = find(objects, "Role", binding["roleRef"]["name"])
    assert binding["roleRef"]["kind"] == "Role"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]


def test_the_local_configuration_passes_promtool(objects, tmp_path):
    """Prometheus's own check: the configuration, its discovery and the rules it names."""
    _, config, files = local_prometheus(objects)
    # The files where the pod has them, moved under tmp_path.
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    config["rule_files"] = [str(tmp_path / p.lstrip("/")) for p in config["rule_files"]]
    key = tmp_path / "api-key"
    key.write_text("not-a-real-key")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(key)
    written = tmp_path / PROMETHEUS_CONFIG
    written.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(written))
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian's is)")
    assert result.returncode == 0, result.stdout + result.stderr


# --- Which targets are scraped, with which labels -----------------------------------------------


def discovered_targets(objects) -> list[dict[str, str]]:
    """The targets Kubernetes' pod discovery gives: one per container port of each pod."""
    targets = []
    for number, workload in enumerate(workloads(objects), start=1):
        labels = pod_labels(workload)
        for container in containers(objects):
            if container.workload is not workload or container.init:
                continue
            for port_name, port in container.ports.items():
                target = {
                    "__address__": f"10.244.0.{number}:{port}",
                    "__meta_kubernetes_namespace": NAMESPACE,
                    "__meta_kubernetes_pod_name": f"{workload['metadata']['name']}-0",
                    "__meta_kubernetes_pod_node_name": NODE,
                    "__meta_kubernetes_pod_phase": "Running",
                    "__meta_kubernetes_pod_container_name": container.name,
                    "__meta_kubernetes_pod_container_port_name": port_name,
                    "__meta_kubernetes_pod_container_port_number": str(port),
                }
                for key, value in labels.items():
                    target[f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"] = (
                        value
                    )
                targets.append(target)
    return targets


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Apply Prometheus's relabelling (replace, keep, drop); None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(
            labels.get(name, "") for name in rule.get("source_labels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = rule.get("replacement", "$1")
            # Prometheus's ${1} (or $1) is Python's \\g<1>.
            result = match.expand(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", replacement))
            if result:
                labels[rule["target_label"]] = result
            else:
                labels.pop(rule["target_label"], None)
        if action not in ("keep", "drop", "replace"):
            raise AssertionError(f"relabel action {action} is not modelled here")
    return labels


def snake_case(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Operator's relabelings (``sourceLabels``) as Prometheus's (``source_labels``)."""
    return [{re.sub(r"([A-Z])", r"_\1", k).lower(): v for k, v in r.items()} for r in rules]


def pod_monitor_endpoints(objects) -> list[dict[str, Any]]:
    return [e for m in of_kind(objects, "PodMonitor") for e in m["spec"]["podMetricsEndpoints"]]


def scraped(objects) -> list[dict[str, str]]:
    """The targets the overlay's Prometheus scrapes, with their labels after relabelling."""
    found = []
    if [w for w in workloads(objects) if pod_labels(w).get(NAME_LABEL) == PROMETHEUS]:
        _, config, _ = local_prometheus(objects)
        (job,) = config["scrape_configs"]
        for target in discovered_targets(objects):
            kept = relabel({**target, "job": job["job_name"]}, job["relabel_configs"])
            if kept is not None:
                found.append(kept)
    for monitor in of_kind(objects, "PodMonitor"):
        selector = monitor["spec"]["selector"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            # What the Operator generates: the pods its selector picks, the port named.
            for target in discovered_targets(objects):
                if not selector_matches(selector, pod_labels_of(target, objects)):
                    continue
                if target["__meta_kubernetes_pod_container_port_name"] != endpoint["port"]:
                    continue
                kept = relabel(target, snake_case(endpoint.get("relabelings") or []))
                if kept is not None:
                    found.append(kept)
    return found


def pod_labels_of(target: dict[str, str], objects) -> dict[str, str]:
    """The real labels (dots and slashes kept) of the pod a discovered target is on."""
    name = target["__meta_kubernetes_pod_name"].removesuffix("-0")
    (workload,) = [w for w in workloads(objects) if w["metadata"]["name"] == name]
    return pod_labels(workload)


def test_prometheus_scrapes_the_metrics_port_of_every_serving_pod_and_nothing_else(
    objects, overlay
):
    targets = scraped(objects)
    if overlay == "production":
        assert not targets, "the plain production overlay configures no scraping"
        return
    expected = set()
    for container in app_containers(objects):
        if container.name == "web":
            expected.add((container.workload["metadata"]["name"], container.ports["http"]))
    found = {
        (
            t["__meta_kubernetes_pod_name"].removesuffix("-0"),
            int(t["__meta_kubernetes_pod_container_port_number"]),
        )
        for t in targets
    }
    assert found == expected
    assert len(targets) == len(expected), "each port once"


def test_scraped_series_are_labelled_as_the_services_label_their_samples(objects, overlay):
    """``service`` is the package, as every sample says; ``job`` after it, as in compose."""
    targets = scraped(objects)
    if overlay == "production":
        pytest.skip("the plain production overlay configures no scraping")
    packages = set()
    for target in targets:
        package = target["service"]
        assert package in SERVICES, target
        assert SERVICES[package] == pod_labels_of(target, objects)[NAME_LABEL]
        assert target["job"] == package
        assert target["node"] == NODE
        packages.add(package)
    assert packages == set(SERVICES)


def test_the_operator_scrapes_with_the_key_of_its_secret_and_keeps_the_samples_labels(objects):
    for endpoint in pod_monitor_endpoints(objects):
        credentials = endpoint["authorization"]["credentials"]
        assert (credentials["name"], credentials["key"]) == PROMETHEUS_KEY
        assert endpoint["path"] == "/metrics"
        assert endpoint["honorLabels"] is True


def test_prometheus_rule_passes_promtool(objects, tmp_path):
    rules = of_kind(objects, "PrometheusRule")
    if not rules:
        pytest.skip("no PrometheusRule in this overlay")
    (rule,) = rules
    written = tmp_path / "rules.yml"
    written.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", str(written))
    assert result.returncode == 0, result.stdout + result.stderr
