"""The Kubernetes overlays, rendered and checked without a cluster.

Every overlay must render with ``kubectl kustomize`` and validate against the
API schemas of a current Kubernetes release. The rest checks what a schema
cannot: selectors that really select the pods they mean, probes, resources
and the security context of every container, and every setting the code
reads reaching the containers that need it (and secrets only those).
"""

import inspect
import re

import pytest

from common.observability.metrics import NODE_NAME_VARIABLE
from common.process.healthcheck import PROBE_TIMEOUT_SECONDS
from common.process.supervisor import Supervisor
from tests.containers.deployment import (
    GRPC_SETTINGS,
    REPO_ROOT,
    SERVICES_DOCKERFILE,
    declaration,
    dockerfile_instructions,
    http_port_variable,
    names_this_machine,
    only,
    reads_by_service,
    speaks_grpc,
)
from tests.deploy.kubernetes import (
    COMPONENT_LABEL,
    FILE_SUFFIX,
    NAME_LABEL,
    NAMESPACE,
    OVERLAYS,
    SERVICES,
    SERVICES_IMAGE,
    app_containers,
    cluster_kind,
    container_env,
    containers,
    find,
    image_name,
    mounted_volume,
    of_kind,
    pod_labels,
    pod_template,
    postgres_containers,
    raw_env,
    selector_matches,
    service_selects,
    workload_id,
    workloads,
)

# The release of the kubectl these machines have; kubernetes-validate ships its schemas.
KUBERNETES_VERSION = "1.32.0"
# Custom resources (the Prometheus Operator's) have no schema there: test_kubernetes_monitoring
# checks them against schemas of its own.
CUSTOM_RESOURCE_GROUPS = {"monitoring.coreos.com"}
REQUIRED_OVERLAYS = {"local", "production"}
# Resident memory per process, measured on the running services (MB). Memory requests
# must cover what a container's processes use; limits leave about as much again.
MEASURED_RSS_MB = {
    "user_manager": {"gunicorn_master": 34, "web_worker": 72, "grpc": 84, "worker": 72},
    "data_collector": {"gunicorn_master": 34, "web_worker": 100, "grpc": 84, "worker": 103},
    # In their compose containers, idle and after 1,000 messages.
    "alert_system": {"gunicorn_master": 25, "web_worker": 72, "worker": 100},
    "alert_notifier": {"gunicorn_master": 25, "web_worker": 72, "worker": 100},
    # Built like the alert services (gunicorn, a worker on a scheduler thread): theirs.
    "sla_detector": {"gunicorn_master": 25, "web_worker": 72, "worker": 100},
}
# An exec probe (`python -m <service> healthcheck grpc`) runs inside the container.
HEALTHCHECK_RSS_MB = 34
LIMIT_TO_REQUEST = (1.5, 2.5)
# Settings the code reads without a default where unset simply means "feature off".
OPTIONAL_WHEN_UNSET = {
    "GRPC_TLS_CERT": "gRPC without TLS: plaintext inside the cluster, behind NetworkPolicies",
    "GRPC_TLS_KEY": "gRPC without TLS",
    "GRPC_TLS_CA": "gRPC without TLS",
    "JWT_JWKS_URL": "no bearer tokens: API keys only",
    "JWT_ISSUER": "no bearer tokens",
    "JWT_AUDIENCE": "no bearer tokens",
    "PUBLIC_BASE_URL": "links are built from the forwarded host of each request",
    "OPENSKY_CLIENT_ID": "anonymous OpenSky access (only the collector's worker calls OpenSky)",
    "OPENSKY_CLIENT_SECRET": "anonymous OpenSky access",
}
# Read by libraries, not through the services' settings classes, so those do not list them.
READ_OUTSIDE_CONFIG = {
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client and the launcher",
    NODE_NAME_VARIABLE: "the metrics' node label (common.observability.metrics)",
}
# The access-control and process-role settings: the manifests set them by their agreed
# names; a name stays here until a service's settings class reads it.
AGREED_SETTINGS = {
    "AUTH_MODE",
    "API_KEYS_FILE",
    "TRUSTED_PROXIES",
}
# The public REST APIs, behind the Ingress; the alert services' REST is for operators.
INGRESS_SERVICES = {"user_manager", "data_collector"}
BROKER = "nats"
# The local overlay's Prometheus: its pods' name, and its image (the official one).
PROMETHEUS = "prometheus"
PROMETHEUS_IMAGE = "prom/prometheus"
BROKER_URL = f"nats://{BROKER}.{NAMESPACE}.svc.cluster.local:4222"
# The broker's servers in each overlay: one, or a cluster of three.
BROKER_SERVERS = {"local": 1, "production": 3}
# Names whose values are secrets (a *_FILE setting is a path to one, not the secret).
SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|DATABASE_URL|PRIVATE", re.IGNORECASE)
# The launcher's roles; the image's default command (all roles in one) is for compose only.
ROLE_CONTAINERS = {"migrate": True, "web": False, "grpc": False, "worker": False}
WORKER_CONTAINERS = ["worker"]
REST_PORTS = {
    "user_manager": 5001,
    "data_collector": 5002,
    "alert_system": 5004,
    "alert_notifier": 5005,
    "sla_detector": 5006,
}
GRPC_PORTS = {"user_manager": 50051, "data_collector": 50052}
PEERS = {"user_manager": "data_collector", "data_collector": "user_manager"}
# Each service's pods (by component) and their init containers and containers. The
# gRPC services: serving pods and a single worker (background jobs that need no more). The
# alert services: the worker beside the web server in every pod, since its work is what
# scales (replicas share the consumer) and its counters reach /metrics only there.
LAYOUTS = {
    "user_manager": {"server": (["migrate"], ["web", "grpc"]), "worker": (["migrate"], ["worker"])},
    "data_collector": {
        "server": (["migrate"], ["web", "grpc"]),
        "worker": (["migrate"], ["worker"]),
    },
    "alert_system": {"server": (["migrate"], ["web", "worker"])},
    "alert_notifier": {"server": (["migrate"], ["web", "worker"])},
    "sla_detector": {"server": (["migrate"], ["web", "worker"])},
}


def mebibytes(quantity: str) -> float:
    """Return a memory quantity (``192Mi``, ``1Gi``, ``500M``) in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    assert match, f"unexpected memory quantity {quantity}"
    return float(match.group(1)) * units.get(match.group(2) or "", 1 / 2**20)


def serving_workloads(objects, package: str):
    return [
        w
        for w in workloads(objects)
        if pod_labels(w).get(NAME_LABEL) == SERVICES[package]
        and pod_labels(w).get(COMPONENT_LABEL) == "server"
    ]


def command_of(container) -> list[str]:
    return [*(container.spec.get("command") or []), *(container.spec.get("args") or [])]


def effective_security(container, key: str):
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    own = container.spec.get("securityContext") or {}
    if key in own:
        return own[key]
    return (container.pod.get("securityContext") or {}).get(key)


def test_the_required_overlays_exist():
    assert set(OVERLAYS) >= REQUIRED_OVERLAYS


# --- Rendering and schemas ----------------------------------------------------------------


def test_every_object_validates_against_the_kubernetes_api_schemas(objects):
    import kubernetes_validate

    failures = []
    for obj in objects:
        if obj["apiVersion"].split("/")[0] in CUSTOM_RESOURCE_GROUPS:
            continue
        try:
            # strict: an unknown field (a typo) fails instead of being dropped silently.
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    assert not failures, "\n".join(failures)


def test_everything_lives_in_one_namespace_that_enforces_the_restricted_pod_standard(objects):
    namespace = find(objects, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_no_secret_is_rendered_and_no_secret_value_is_written_in_a_manifest(objects):
    assert not of_kind(objects, "Secret"), "Secrets are created by create-secrets.sh, not kept here"
    for config_map in of_kind(objects, "ConfigMap"):
        for key in config_map.get("data") or {}:
            if key.endswith((".sh", "_FILE")):
                continue
            assert not SECRET_LOOKING.search(key), f"{config_map['metadata']['name']}: {key}"
    for container in containers(objects):
        for name, source in container_env(container, objects).items():
            if SECRET_LOOKING.search(name) and not name.endswith("_FILE") and source.value:
                raise AssertionError(f"{container.id}: {name} must come from a Secret")


# --- Selectors ------------------------------------------------------------------------------


def test_each_workload_selects_its_own_pods_and_no_other_workloads(objects):
    for workload in workloads(objects):
        selector = workload["spec"]["selector"]
        assert selector_matches(selector, pod_labels(workload)), workload_id(workload)
        for other in workloads(objects):
            if other is not workload:
                assert not selector_matches(selector, pod_labels(other)), (
                    f"{workload_id(workload)} would adopt the pods of {workload_id(other)}"
                )


def test_each_service_selects_the_pods_of_one_workload_on_ports_they_listen_on(objects):
    for service in of_kind(objects, "Service"):
        name = service["metadata"]["name"]
        selected = [w for w in workloads(objects) if service_selects(service, pod_labels(w))]
        assert len(selected) == 1, f"Service {name} selects {[workload_id(w) for w in selected]}"
        listening = {}
        for container in containers(objects):
            if container.workload is selected[0] and not container.init:
                listening |= container.ports
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = listening.get(target) if isinstance(target, str) else target
            assert number in listening.values(), f"Service {name}: nothing listens on {target}"


def test_grpc_services_are_headless_so_clients_balance_over_every_pod(objects):
    for service in of_kind(objects, "Service"):
        if any(port.get("appProtocol") == "grpc" for port in service["spec"]["ports"]):
            assert service["spec"].get("clusterIP") == "None", service["metadata"]["name"]


def test_statefulsets_are_governed_by_a_headless_service_that_selects_them(objects):
    for stateful_set in of_kind(objects, "StatefulSet"):
        service = find(objects, "Service", stateful_set["spec"]["serviceName"])
        assert service["spec"].get("clusterIP") == "None"
        assert service_selects(service, pod_labels(stateful_set))


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_serving_pods_have_an_autoscaler_a_disruption_budget_and_two_replicas(objects, package):
    serving = serving_workloads(objects, package)
    assert len(serving) == 1, f"{package}: one serving Deployment"
    deployment = serving[0]
    assert deployment["kind"] == "Deployment"
    name = deployment["metadata"]["name"]

    autoscalers = [
        hpa
        for hpa in of_kind(objects, "HorizontalPodAutoscaler")
        if hpa["spec"]["scaleTargetRef"]
        == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    ]
    assert len(autoscalers) == 1, f"{name}: one HorizontalPodAutoscaler"
    hpa = autoscalers[0]["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"] == ["cpu"]
    # A count in the Deployment would fight the autoscaler at every `kubectl apply`.
    assert "replicas" not in deployment["spec"], f"{name}: leave the replica count to the HPA"

    budgets = [
        pdb
        for pdb in of_kind(objects, "PodDisruptionBudget")
        if selector_matches(pdb["spec"]["selector"], pod_labels(deployment))
    ]
    assert len(budgets) == 1, f"{name}: one PodDisruptionBudget"
    budget = budgets[0]["spec"]
    for other in workloads(objects):
        if other is not deployment:
            assert not selector_matches(budget["selector"], pod_labels(other)), workload_id(other)
    # The budget must let a drain proceed (one pod at a time) and keep one serving.
    assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable", 0) < hpa["minReplicas"]


def test_every_autoscaler_and_budget_targets_a_rendered_workload(objects):
    names = {w["metadata"]["name"] for w in of_kind(objects, "Deployment")}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in names
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        assert any(
            selector_matches(pdb["spec"]["selector"], pod_labels(w)) for w in workloads(objects)
        )


def test_the_ingress_routes_one_host_to_each_public_rest_api(objects):
    (ingress,) = of_kind(objects, "Ingress")
    assert ingress["spec"].get("ingressClassName")
    routed = {}
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert path["path"] == "/" and path["pathType"] == "Prefix"
        backend = path["backend"]["service"]
        service = find(objects, "Service", backend["name"])
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]]
        routed[rule["host"]] = (service, port)
    assert len(routed) == len(INGRESS_SERVICES), "one host per public REST API"
    targets = set()
    for service, port in routed.values():
        (workload,) = [w for w in workloads(objects) if service_selects(service, pod_labels(w))]
        (web,) = [c for c in app_containers(objects) if c.workload is workload and c.name == "web"]
        assert web.ports[port["targetPort"]] == REST_PORTS[web.package]
        targets.add(web.package)
    assert targets == INGRESS_SERVICES, "the alert services' REST is for operators only"


# --- Containers: commands, probes, resources, security ---------------------------------------


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_each_process_runs_in_its_own_container_and_migrations_run_first(objects, package):
    layouts = {}
    for workload in workloads(objects):
        found = [c for c in app_containers(objects, package) if c.workload is workload]
        if found:
            layouts[pod_labels(workload)[COMPONENT_LABEL]] = (
                [c.name for c in found if c.init],
                [c.name for c in found if not c.init],
            )
    assert layouts == LAYOUTS[package]
    roles = {name for _, names in LAYOUTS[package].values() for name in names}
    assert roles == set(declaration(package).role_names), "every role of the service runs"
    for container in app_containers(objects, package):
        assert command_of(container) == ["python", "-m", package, container.name], container.id
        assert ROLE_CONTAINERS[container.name] == container.init, container.id


def test_every_container_runs_locked_down(objects):
    for container in containers(objects):
        security = container.spec.get("securityContext") or {}
        assert effective_security(container, "runAsNonRoot") is True, container.id
        assert security.get("allowPrivilegeEscalation") is False, container.id
        assert security.get("readOnlyRootFilesystem") is True, container.id
        assert "ALL" in (security.get("capabilities") or {}).get("drop", []), container.id
        assert not (security.get("capabilities") or {}).get("add"), container.id
        assert not security.get("privileged"), container.id
        seccomp = effective_security(container, "seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", container.id
    for workload in workloads(objects):
        spec = pod_template(workload)["spec"]
        # Prometheus alone reads the API (its service discovery), with a token whose Role
        # allows reading pods and nothing else (test_kubernetes_monitoring).
        needs_token = pod_labels(workload).get(NAME_LABEL) == PROMETHEUS
        assert spec.get("automountServiceAccountToken") is needs_token, workload_id(workload)
        assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
        assert not any("hostPath" in volume for volume in spec.get("volumes") or [])


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_service_containers_run_as_the_image_user(objects, package):
    user = only(dockerfile_instructions(REPO_ROOT / SERVICES_DOCKERFILE), "USER").args
    uid, _, gid = user.partition(":")
    for container in app_containers(objects, package):
        assert str(effective_security(container, "runAsUser")) == uid, container.id
        assert str(effective_security(container, "runAsGroup")) == gid, container.id


def test_every_writable_path_is_a_size_limited_volume(objects):
    for container in containers(objects):
        assert mounted_volume(container, "/tmp"), f"{container.id}: /tmp must be writable"
        for volume in container.pod.get("volumes") or []:
            if "emptyDir" in volume:
                # tmpfs pages count against the container's memory limit.
                assert volume["emptyDir"].get("sizeLimit"), f"{container.id}: {volume['name']}"


def test_every_container_has_requests_and_a_memory_limit_about_twice_the_request(objects):
    low, high = LIMIT_TO_REQUEST
    for container in containers(objects):
        resources = container.spec.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        assert requests.get("cpu") and requests.get("memory"), container.id
        assert limits.get("memory"), container.id
        ratio = mebibytes(limits["memory"]) / mebibytes(requests["memory"])
        assert low <= ratio <= high, f"{container.id}: memory limit is {ratio:.1f}x the request"


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_memory_requests_cover_the_measured_resident_memory(objects, package):
    rss = MEASURED_RSS_MB[package]
    for container in app_containers(objects, package):
        if container.name == "web":
            workers = int(container_env(container, objects)["WEB_CONCURRENCY"].value)
            needed = rss["gunicorn_master"] + workers * rss["web_worker"]
        elif container.name == "grpc":
            needed = rss["grpc"] + HEALTHCHECK_RSS_MB
        elif container.name == "worker":
            needed = rss["worker"] + HEALTHCHECK_RSS_MB
        else:
            needed = rss["worker"]  # migrate loads the same app as the worker
        request = mebibytes(container.spec["resources"]["requests"]["memory"])
        assert request * 2**20 >= needed * 1e6, f"{container.id}: {request} Mi < {needed} MB"


def test_every_serving_container_has_startup_liveness_and_readiness_probes(objects):
    for container in containers(objects):
        if container.init:
            continue
        probes = [
            container.spec.get(p) for p in ("startupProbe", "livenessProbe", "readinessProbe")
        ]
        assert all(probes), f"{container.id}: startup, liveness and readiness probes"
        if container.name in WORKER_CONTAINERS:
            # It listens on nothing: every probe reads its heartbeats (making progress).
            assert not container.ports, container.id
            check = ["python", "-m", container.package, "healthcheck", "worker"]
            for probe in probes:
                assert probe["exec"]["command"] == check, container.id
                assert probe["timeoutSeconds"] > PROBE_TIMEOUT_SECONDS, container.id
            continue
        for probe in probes:
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler in probe:
                    port = probe[handler]["port"]
                    known = container.ports.get(port) if isinstance(port, str) else port
                    assert known in container.ports.values(), f"{container.id}: probe port {port}"


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_liveness_is_ping_and_readiness_is_the_service_own_database(objects, package):
    # Readiness waits for the check's connection and its query.
    check_seconds = 2 * PROBE_TIMEOUT_SECONDS
    peer = PEERS.get(package)
    for container in app_containers(objects, package):
        if container.name == "web":
            assert container.spec["livenessProbe"]["httpGet"]["path"] == "/ping"
            assert container.spec["startupProbe"]["httpGet"]["path"] == "/ping"
            readiness = container.spec["readinessProbe"]
            assert readiness["exec"]["command"] == [
                *["python", "-m", package, "healthcheck", "web", "database"]
            ]
            assert readiness["timeoutSeconds"] > check_seconds, container.id
        if container.name == "grpc":
            # The service's own check: it sends the token and speaks TLS when configured.
            check = ["python", "-m", package, "healthcheck", "grpc"]
            for probe in ("startupProbe", "livenessProbe"):
                assert container.spec[probe]["exec"]["command"] == check, f"{container.id} {probe}"
            readiness = container.spec["readinessProbe"]
            assert readiness["exec"]["command"] == [*check, "database"], container.id
            assert readiness["timeoutSeconds"] > check_seconds, container.id
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            text = str(container.spec.get(probe) or "")
            assert peer is None or (peer not in text and SERVICES[peer] not in text), (
                f"{container.id}: a probe must never depend on the peer service"
            )


def test_a_stopping_pod_gets_time_for_its_pre_stop_pause_and_a_graceful_shutdown(objects):
    launcher_grace = inspect.signature(Supervisor).parameters["grace_seconds"].default
    for container in app_containers(objects):
        if container.init:
            continue
        pause = ((container.spec.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
        needed = pause.get("seconds", 0) + launcher_grace
        assert container.pod.get("terminationGracePeriodSeconds", 30) > needed, container.id


def compose_image(name: str) -> str:
    """Return the image reference docker-compose.yml runs for an image name."""
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    (image,) = set(re.findall(rf"^\s+image: ({re.escape(name)}:\S+)$", text, re.MULTILINE))
    return image


def test_images_are_the_services_postgres_nats_or_prometheus_with_a_pinned_tag(objects):
    for container in containers(objects):
        image = container.spec["image"]
        assert container.spec.get("imagePullPolicy") == "IfNotPresent", container.id
        if image_name(image) == "postgres":
            assert image == "postgres:18", f"{container.id}: {image}"
            continue
        if image_name(image) == "nats":
            assert re.fullmatch(r"nats:\d+\.\d+(\.\d+)?-alpine", image), image
            continue
        if image_name(image) == PROMETHEUS_IMAGE:
            # The official image, at the release compose runs.
            assert image == compose_image(PROMETHEUS_IMAGE), f"{container.id}: {image}"
            continue
        # The services, and the local overlay's mail catcher, which their image runs.
        assert (container.spec.get("command") or [])[:2] == ["python", "-m"], container.id
        assert image_name(image).endswith(SERVICES_IMAGE), f"{container.id}: {image}"
        tag = image[len(image_name(image)) :]
        assert tag.startswith("@sha256:") or (tag.startswith(":") and tag != ":latest"), image


# --- Settings and secrets ----------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_every_setting_the_code_reads_is_set_or_has_a_default(objects, package):
    reads = reads_by_service(package)
    migration_url = f"{package.upper()}_MIGRATION_DATABASE_URL"
    for container in app_containers(objects, package):
        env = container_env(container, objects)
        for variable, calls in sorted(reads.items()):
            where = ", ".join(call.location for call in calls)
            has_default = all(call.has_default for call in calls)
            if variable == migration_url:
                continue  # checked below: the migrate container only
            if variable in GRPC_SETTINGS and not speaks_grpc(package):
                assert variable not in env, f"{container.id}: {variable}, and it has no gRPC"
                continue
            if not has_default and variable not in OPTIONAL_WHEN_UNSET:
                assert variable in env, f"{container.id}: {variable} has no default ({where})"
            defaults = [str(call.default) for call in calls if call.has_default]
            if any(names_this_machine(d) for d in defaults):
                assert variable in env, f"{container.id}: {variable} defaults to {defaults}"
        for variable in env:
            # A setting given as a file is read as the setting itself.
            setting = variable.removesuffix(FILE_SUFFIX)
            known = (
                variable in reads
                or setting in reads
                or variable in READ_OUTSIDE_CONFIG
                or variable in AGREED_SETTINGS
            )
            assert known, f"{container.id} sets {variable}, which the code never reads"


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_each_service_gets_its_own_database_and_only_migrations_the_owner_role(objects, package):
    secret = f"{SERVICES[package]}-database"
    for container in app_containers(objects, package):
        env = container_env(container, objects)
        assert env[f"{package.upper()}_DATABASE_URL"].secret == (secret, "url"), container.id
        owner = env.get(f"{package.upper()}_MIGRATION_DATABASE_URL")
        mounted_keys = secret_keys_mounted(container)
        if container.name == "migrate":
            assert owner and owner.secret == (secret, "migration-url"), container.id
        else:
            assert owner is None, f"{container.id}: only migrations may hold the owner role"
            # Not even as a file it could open.
            assert (secret, "migration-url") not in mounted_keys, container.id
        for other in set(SERVICES) - {package}:
            assert not any(name == f"{SERVICES[other]}-database" for name, _ in mounted_keys)
            for variable in ("DATABASE_URL", "MIGRATION_DATABASE_URL"):
                assert f"{other.upper()}_{variable}" not in env, container.id


def secret_keys_mounted(container) -> set[tuple[str, str | None]]:
    """Each (Secret, key) whose file the container can read; key None: the whole Secret."""
    found = set()
    for mount in container.spec.get("volumeMounts") or []:
        volume = next(v for v in container.pod["volumes"] if v["name"] == mount["name"])
        secret = volume.get("secret")
        if secret:
            keys = [item["key"] for item in secret.get("items") or []] or [None]
            found |= {(secret["secretName"], key) for key in keys}
    return found


def test_no_secret_is_in_a_container_s_environment(objects):
    """Secrets are files of mounted Secrets; the environment holds only their paths.

    Every process of a container (and `kubectl describe`, a crash report) can read
    its environment.
    """
    for container in containers(objects):
        for name, source in raw_env(container, objects).items():
            assert source.secret is None, f"{container.id}: {name} from a Secret's key"
        for source in container.spec.get("envFrom") or []:
            assert "secretRef" not in source, container.id
        for name, source in container_env(container, objects).items():
            if source.secret is not None:
                assert source.secret_file, f"{container.id}: {name}"
                assert mounted_volume(container, source.secret_file)[0] != "/tmp"


def test_access_control_is_on_with_one_grpc_token_and_the_api_keys_mounted(objects):
    tokens = set()
    for container in app_containers(objects):
        env = container_env(container, objects)
        assert env["AUTH_MODE"].value == "on", container.id
        assert not env["AUTH_MODE"].secret
        if speaks_grpc(container.package):
            tokens.add(env["GRPC_AUTH_TOKEN"].secret)
        keys_file = env["API_KEYS_FILE"].value
        mount_path, volume = mounted_volume(container, keys_file)
        assert volume.get("secret", {}).get("secretName") == "api-keys", container.id
        assert keys_file == f"{mount_path}/api-keys.json"
        if container.package in INGRESS_SERVICES:
            assert env["TRUSTED_PROXIES"].value == "1", "the ingress controller is the one proxy"
        else:
            assert "TRUSTED_PROXIES" not in env, f"{container.id}: no proxy in front of it"
    assert tokens == {("grpc-auth", "token")}, "both services must share the same token"


def test_only_the_collector_worker_holds_the_opensky_client(objects):
    for container in app_containers(objects):
        env = container_env(container, objects)
        holds = {name for name in ("OPENSKY_CLIENT_ID", "OPENSKY_CLIENT_SECRET") if name in env}
        mounted = {name for name, _ in secret_keys_mounted(container)}
        if container.package == "data_collector" and container.name == "worker":
            assert holds == {"OPENSKY_CLIENT_ID", "OPENSKY_CLIENT_SECRET"}
            # Its values empty (create-secrets.sh without credentials): anonymous access.
            assert {env[name].secret[0] for name in holds} == {"opensky-credentials"}
        else:
            assert not holds and "opensky-credentials" not in mounted, container.id


def test_only_the_notifier_holds_the_mail_server_s_login(objects, overlay):
    for container in app_containers(objects):
        env = container_env(container, objects)
        mounted = {name for name, _ in secret_keys_mounted(container)}
        if container.package != "alert_notifier":
            assert "smtp-credentials" not in mounted, container.id
            continue
        login = {env[name].secret for name in ("SMTP_USERNAME", "SMTP_PASSWORD")}
        assert login == {("smtp-credentials", "username"), ("smtp-credentials", "password")}
        # A mail server in every overlay (required by the notifier's settings).
        host = env["SMTP_HOST"].value
        assert host, container.id
        if cluster_kind(overlay) == "production":
            # The login never crosses the internet in clear.
            assert env["SMTP_STARTTLS"].value == "1", container.id


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_ports_in_the_settings_are_the_ports_the_containers_declare(objects, package):
    prefix = package.upper()
    for container in app_containers(objects, package):
        env = container_env(container, objects)
        assert env["BIND_HOST"].value == "0.0.0.0"
        assert env[http_port_variable(package)].value == str(REST_PORTS[package])
        if package in GRPC_PORTS:
            assert env["GRPC_BIND_HOST"].value == "0.0.0.0"
            assert env[f"{prefix}_GRPC_PORT"].value == str(GRPC_PORTS[package])
        if container.name == "web":
            assert list(container.ports.values()) == [REST_PORTS[package]]
        if container.name == "grpc":
            assert list(container.ports.values()) == [GRPC_PORTS[package]]
        if container.name == "worker":
            assert not container.ports, container.id


@pytest.mark.parametrize("package", sorted(PEERS))
def test_the_peer_address_is_the_peer_headless_grpc_service(objects, package):
    peer = PEERS[package]
    for container in app_containers(objects, package):
        address = container_env(container, objects)[f"{peer.upper()}_GRPC_ADDR"].value
        # dns:/// makes the gRPC client resolve every pod behind the name and balance.
        assert address.startswith("dns:///"), address
        host, _, port = address.removeprefix("dns:///").rpartition(":")
        service_name, namespace, *domain = host.split(".")
        assert namespace == NAMESPACE and domain == ["svc", "cluster", "local"], address
        service = find(objects, "Service", service_name)
        assert service["spec"].get("clusterIP") == "None"
        assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]
        (serving,) = serving_workloads(objects, peer)
        assert service_selects(service, pod_labels(serving))
        assert int(port) == GRPC_PORTS[peer]


def test_metrics_files_sit_in_a_volume_the_web_container_shares_in_its_pod(objects):
    for container in app_containers(objects):
        metrics_dir = container_env(container, objects)["PROMETHEUS_MULTIPROC_DIR"].value
        held = mounted_volume(container, metrics_dir)
        assert held and "emptyDir" in held[1], f"{container.id}: {metrics_dir} is not writable"
    for workload in workloads(objects):
        group = [c for c in app_containers(objects) if c.workload is workload and not c.init]
        if len(group) > 1:
            volumes = set()
            for container in group:
                path = container_env(container, objects)["PROMETHEUS_MULTIPROC_DIR"].value
                volumes.add(mounted_volume(container, path)[1]["name"])
            assert len(volumes) == 1, f"{workload_id(workload)}: /metrics would miss samples"
            # prometheus_client names its files by PID; separate PID namespaces collide.
            assert pod_template(workload)["spec"].get("shareProcessNamespace") is True


def test_every_service_container_names_its_node_from_the_downward_api(objects):
    """The ``node`` label of every sample: the Kubernetes node, not the pod's host name."""
    for container in app_containers(objects):
        source = raw_env(container, objects)[NODE_NAME_VARIABLE]
        assert source.field == "spec.nodeName", container.id


def test_config_maps_the_pods_use_are_rendered(objects):
    for container in containers(objects):
        container_env(container, objects)  # fails on an unknown ConfigMap
    for workload in workloads(objects):
        for volume in pod_template(workload)["spec"].get("volumes") or []:
            if "configMap" in volume:
                find(objects, "ConfigMap", volume["configMap"]["name"])


# --- Databases -----------------------------------------------------------------------------


def test_local_runs_postgresql_in_the_cluster_and_production_does_not(objects, overlay):
    postgres = postgres_containers(objects)
    if cluster_kind(overlay) == "production":
        assert not postgres
        assert [s["metadata"]["name"] for s in of_kind(objects, "StatefulSet")] == [BROKER]
        return
    names = {c.workload["metadata"]["name"] for c in postgres}
    assert names == {"user-db", "data-db", "alert-db", "notifier-db", "sla-db"}
    for container in postgres:
        stateful_set = container.workload
        (claim,) = stateful_set["spec"]["volumeClaimTemplates"]
        mounts = {m["name"]: m["mountPath"] for m in container.spec["volumeMounts"]}
        # PostgreSQL 18 images keep the cluster under /var/lib/postgresql/18/docker.
        assert mounts[claim["metadata"]["name"]] == "/var/lib/postgresql"
        service = find(objects, "Service", stateful_set["metadata"]["name"])
        assert [port["port"] for port in service["spec"]["ports"]] == [5432]


# --- Requests per client -------------------------------------------------------------------

INGRESS_NGINX = "nginx.ingress.kubernetes.io/"


def compose_gateway_default(name: str) -> int:
    """The default docker-compose.yml gives one of the gateway's limits (GATEWAY_*)."""
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    return int(re.search(rf"\$\{{{name}:-(\d+)\}}", text).group(1))


def test_the_ingress_limits_each_client_as_the_compose_gateway_does(objects):
    """ingress-nginx tells clients apart by address only; the numbers are the gateway's."""
    (ingress,) = of_kind(objects, "Ingress")
    annotations = ingress["metadata"].get("annotations") or {}
    in_flight = int(annotations[INGRESS_NGINX + "limit-connections"])
    rate = int(annotations[INGRESS_NGINX + "limit-rps"])
    burst = rate * int(annotations[INGRESS_NGINX + "limit-burst-multiplier"])
    assert in_flight == compose_gateway_default("GATEWAY_REQUESTS_IN_FLIGHT")
    assert rate == compose_gateway_default("GATEWAY_RATE_PER_SECOND")
    assert burst == compose_gateway_default("GATEWAY_BURST")
