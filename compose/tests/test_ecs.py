"""compose/ecs/: the CloudFormation template passes cfn-lint, and each service's parameter
file gives a task whose command, port, environment and scaling match the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_cli.deployment import environment_problems
from wharf_cli.services import SERVICES, ServiceSpec
from wharf_common.queuemetrics import NAMESPACE, metric_data
from wharf_common.queues import Backlog

ECS = Path(__file__).resolve().parents[1] / "ecs"
TEMPLATE = ECS / "service.yaml"
SERVICE_IDS = [spec.name for spec in SERVICES]
FARGATE_MAX_STOP_TIMEOUT = 120
QUEUE_SCALED = {"documents", "carrier-ingest"}
_NO_VALUE = object()


class _Stack:
    """Just enough of CloudFormation to read one container definition with parameters."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.template = template
        defaults = {
            name: str(spec["Default"])
            for name, spec in template["Parameters"].items()
            if "Default" in spec
        }
        self.parameters = {**defaults, **parameters}

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return _NO_VALUE if argument == "AWS::NoValue" else self.parameters.get(argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::If":
                name, then, otherwise = argument
                return self.value(then if self.condition(name) else otherwise)
            if key == "Fn::Equals":
                left, right = (str(self.value(side)) for side in argument)
                return left == right
            if key == "Fn::Not":
                return not self.value(argument[0])
            if key == "Fn::Or":
                return any(self.value(item) for item in argument)
            if key == "Fn::Sub":
                return argument
        return {key: self.value(item) for key, item in node.items()}

    def resource(self, name: str) -> dict[str, Any] | None:
        resource = self.template["Resources"][name]
        if "Condition" in resource and not self.condition(resource["Condition"]):
            return None
        properties: dict[str, Any] = self.value(resource["Properties"])
        return properties


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return loaded


def _stack(template: dict[str, Any], spec: ServiceSpec) -> _Stack:
    entries = json.loads((ECS / f"{spec.name}.json").read_text())
    parameters = {entry["ParameterKey"]: entry["ParameterValue"] for entry in entries}
    assert set(parameters) <= set(template["Parameters"])
    return _Stack(template, parameters)


def _cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("cfn-lint")), str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_template_passes_cfn_lint() -> None:
    result = _cfn_lint(TEMPLATE)

    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(template: dict[str, Any], tmp_path: Path) -> None:
    broken = json.loads(json.dumps(template))
    broken["Resources"]["Service"]["Properties"]["LaunchType"] = "FARGATTE"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))

    assert _cfn_lint(path).returncode != 0


def test_every_service_of_the_table_has_parameters() -> None:
    assert {path.stem for path in ECS.glob("*.json")} == set(SERVICE_IDS)


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_task_matches_its_code(template: dict[str, Any], spec: ServiceSpec) -> None:
    stack = _stack(template, spec)
    task = stack.resource("TaskDefinition")
    assert task is not None
    (container,) = task["ContainerDefinitions"]
    env = {item["Name"]: str(item["Value"]) for item in container["Environment"]}
    env |= {item["Name"]: "<from SSM>" for item in container["Secrets"]}

    assert container["Command"] == ["python", "-m", spec.module]
    assert container["PortMappings"] == [{"ContainerPort": str(spec.port), "Protocol": "tcp"}]
    assert environment_problems(spec, env) == []
    stop_timeout = container["StopTimeout"]
    assert float(env["WHARF_STOP_TIMEOUT"]) < stop_timeout <= FARGATE_MAX_STOP_TIMEOUT
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "/opt/wharf/healthcheck.py"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["User"] == "10001"


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_scaling_follows_the_published_metric(template: dict[str, Any], spec: ServiceSpec) -> None:
    stack = _stack(template, spec)
    policy = stack.resource("QueueDepthPolicy")
    task = stack.resource("TaskDefinition")
    assert task is not None
    env = {item["Name"]: item["Value"] for item in task["ContainerDefinitions"][0]["Environment"]}

    if spec.name not in QUEUE_SCALED:
        assert policy is None
        assert env["WHARF_QUEUE_METRICS"] == "false"
        return
    target = stack.resource("ScalableTarget")
    assert target is not None
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    published = metric_data(spec.name, Backlog(depth=1, consumers=1))[1]
    assert env["WHARF_QUEUE_METRICS"] == "true"
    assert (metric["Namespace"], metric["MetricName"]) == (NAMESPACE, published["MetricName"])
    assert metric["Dimensions"] == published["Dimensions"]
    assert int(target["MinCapacity"]) <= int(target["MaxCapacity"])
    assert spec.max_tasks is not None and int(target["MaxCapacity"]) <= spec.max_tasks


def test_gateway_scales_on_cpu(template: dict[str, Any]) -> None:
    stack = _stack(template, next(spec for spec in SERVICES if spec.name == "gateway"))

    assert stack.resource("CpuPolicy") is not None
    assert stack.resource("QueueDepthPolicy") is None


def test_gateway_ops_api_scales_this_cluster(template: dict[str, Any]) -> None:
    stack = _stack(template, next(spec for spec in SERVICES if spec.name == "gateway"))
    task = stack.resource("TaskDefinition")
    assert task is not None
    env = {item["Name"]: item["Value"] for item in task["ContainerDefinitions"][0]["Environment"]}

    assert env["WHARF_BACKEND"] == "ecs"
    assert env["WHARF_ECS_CLUSTER"] == stack.parameters.get("ClusterName")
