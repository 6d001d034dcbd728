"""The Kubernetes backend: the Deployment scale subresource over the API server's HTTP API.

A service ``<name>`` is the Deployment ``<name>`` in one namespace; its pods
carry ``app.kubernetes.io/name=<name>``. Its autoscaler is a KEDA ScaledObject
or an HPA of the same name. `scale` pins KEDA with its paused-replicas
annotation, and an HPA with min = max (the bounds it had are kept in an
annotation for `release`); then it sets the Deployment's replicas.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from wharf_cli.backend import (
    Backend,
    BackendConfigError,
    BackendError,
    ServiceState,
    TaskPhase,
    TaskState,
)

logger = logging.getLogger(__name__)

PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
RELEASED_BOUNDS = "wharf.io/released-bounds"
_MERGE_PATCH = "application/merge-patch+json"
_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def in_cluster_url() -> str:
    """The API server's address inside a pod, from the variables Kubernetes sets."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        raise BackendConfigError(
            "the k8s backend needs the API server's address: set WHARF_K8S_API_URL"
            " (and WHARF_K8S_TOKEN or WHARF_K8S_TOKEN_FILE), or run it in a pod"
        )
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://{host}:{port}"


def in_cluster_namespace() -> str:
    """The pod's own namespace, else ``wharf``."""
    try:
        return _NAMESPACE_FILE.read_text().strip()
    except OSError:
        return "wharf"


def _phase(pod: dict[str, Any]) -> TaskPhase:
    if pod["metadata"].get("deletionTimestamp"):
        return "stopping"
    phase = pod.get("status", {}).get("phase")
    if phase == "Running":
        return "running"
    if phase in ("Succeeded", "Failed"):
        return "exited"
    return "starting"


def _task(pod: dict[str, Any]) -> TaskState:
    status = pod.get("status", {})
    conditions = status.get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses", []))
    phase = _phase(pod)
    return TaskState(
        name=pod["metadata"]["name"], phase=phase, ready=ready and phase == "running",
        restarts=restarts,
    )  # fmt: skip


class KubernetesBackend(Backend):
    """Scale and status of Wharf's Deployments in one namespace."""

    def __init__(
        self,
        api_url: str,
        namespace: str,
        services: Sequence[str],
        *,
        token: str | None = None,
        ca_file: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._api = api_url.rstrip("/")
        self._namespace = namespace
        self._services = list(services)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ssl: ssl.SSLContext | bool = True
        if ca_file is not None and ca_file.is_file():
            self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _path(self, group: str, kind: str, name: str = "") -> str:
        base = "/api/v1" if group == "" else f"/apis/{group}"
        path = f"{base}/namespaces/{self._namespace}/{kind}"
        return f"{path}/{name}" if name else path

    async def _call(
        self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": _MERGE_PATCH} if method == "PATCH" else {}
        try:
            async with self._session.request(
                method, self._api + path, data=data, params=params, headers=headers, ssl=self._ssl
            ) as response:
                if response.status == 404:
                    return None
                answer = await response.json(content_type=None)
                if response.status >= 400:
                    message = answer.get("message") if isinstance(answer, dict) else answer
                    raise BackendError(f"Kubernetes answered {response.status}: {message}")
                return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendError(f"Kubernetes API unreachable at {self._api}: {exc}") from exc

    def _check(self, service: str) -> None:
        if service not in self._services:
            known = ", ".join(self._services)
            raise BackendError(f"unknown service {service!r} (known: {known})")

    async def _owner(self, service: str) -> tuple[str, dict[str, Any]] | None:
        scaled = await self._call("GET", self._path("keda.sh/v1alpha1", "scaledobjects", service))
        if scaled is not None:
            return "keda", scaled
        hpa = await self._call(
            "GET", self._path("autoscaling/v2", "horizontalpodautoscalers", service)
        )
        if hpa is not None:
            return "hpa", hpa
        return None

    async def _state(self, service: str, deployment: dict[str, Any]) -> ServiceState:
        pods = await self._call(
            "GET",
            self._path("", "pods"),
            params={"labelSelector": f"app.kubernetes.io/name={service}"},
        )
        owner = await self._owner(service)
        pinned = False
        if owner is not None:
            annotations = owner[1]["metadata"].get("annotations") or {}
            pinned = (PAUSED_REPLICAS if owner[0] == "keda" else RELEASED_BOUNDS) in annotations
        return ServiceState(
            name=service,
            desired=int(deployment["spec"].get("replicas", 1)),
            tasks=[_task(pod) for pod in (pods or {}).get("items", [])],
            autoscaler=owner[0] if owner else None,
            pinned=pinned,
        )

    async def _deployment(self, service: str) -> dict[str, Any]:
        self._check(service)
        found = await self._call("GET", self._path("apps/v1", "deployments", service))
        if found is None:
            raise BackendError(f"no Deployment {service} in namespace {self._namespace}")
        deployment: dict[str, Any] = found
        return deployment

    async def status(self) -> list[ServiceState]:
        """Every service with a Deployment in the namespace."""
        states = []
        for service in self._services:
            found = await self._call("GET", self._path("apps/v1", "deployments", service))
            if found is not None:
                states.append(await self._state(service, found))
        return states

    async def scale(self, service: str, count: int) -> ServiceState:
        """Pin the service's autoscaler at `count`, then patch the scale subresource."""
        if count < 0:
            raise BackendError("a task count cannot be negative")
        await self._deployment(service)
        owner = await self._owner(service)
        if owner is not None and owner[0] == "keda":
            path = self._path("keda.sh/v1alpha1", "scaledobjects", service)
            patch = {"metadata": {"annotations": {PAUSED_REPLICAS: str(count)}}}
            await self._call("PATCH", path, patch)
        elif owner is not None:
            await self._pin_hpa(service, owner[1], count)
        scale_path = self._path("apps/v1", "deployments", service) + "/scale"
        await self._call("PATCH", scale_path, {"spec": {"replicas": count}})
        logger.info("scaled %s to %d", service, count)
        return await self._state(service, await self._deployment(service))

    async def _pin_hpa(self, service: str, hpa: dict[str, Any], count: int) -> None:
        if count < 1:
            raise BackendError(f"{service} has an HPA, which cannot hold 0 replicas")
        annotations = hpa["metadata"].get("annotations") or {}
        spec = hpa["spec"]
        bounds = annotations.get(RELEASED_BOUNDS) or json.dumps(
            {"min": spec.get("minReplicas", 1), "max": spec["maxReplicas"]}
        )
        patch = {
            "metadata": {"annotations": {RELEASED_BOUNDS: bounds}},
            "spec": {"minReplicas": count, "maxReplicas": count},
        }
        await self._call(
            "PATCH", self._path("autoscaling/v2", "horizontalpodautoscalers", service), patch
        )

    async def release(self, service: str) -> ServiceState:
        """Remove the pin: KEDA's annotation, or the HPA's own bounds restored."""
        await self._deployment(service)
        owner = await self._owner(service)
        if owner is not None and owner[0] == "keda":
            path = self._path("keda.sh/v1alpha1", "scaledobjects", service)
            await self._call("PATCH", path, {"metadata": {"annotations": {PAUSED_REPLICAS: None}}})
        elif owner is not None:
            annotations = owner[1]["metadata"].get("annotations") or {}
            if RELEASED_BOUNDS in annotations:
                bounds = json.loads(annotations[RELEASED_BOUNDS])
                patch = {
                    "metadata": {"annotations": {RELEASED_BOUNDS: None}},
                    "spec": {"minReplicas": bounds["min"], "maxReplicas": bounds["max"]},
                }
                path = self._path("autoscaling/v2", "horizontalpodautoscalers", service)
                await self._call("PATCH", path, patch)
        return await self._state(service, await self._deployment(service))

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
