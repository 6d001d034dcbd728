"""An HTTP fake of the few Kubernetes API calls the backend makes, with aiohttp.

Deployments (and their scale subresource), HPAs, KEDA ScaledObjects and pods in
namespaces, JSON merge patches, and a bearer token. Pods follow a Deployment's
replicas at once, all running and ready.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

TOKEN = "fake-token"

_KINDS = {
    ("apps/v1", "deployments"): "deployments",
    ("autoscaling/v2", "horizontalpodautoscalers"): "hpas",
    ("keda.sh/v1alpha1", "scaledobjects"): "scaledobjects",
}


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: null removes a key, objects merge, anything else replaces."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class FakeKubernetes:
    """Objects by store and (namespace, name), and the requests seen."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            store: {} for store in _KINDS.values()
        }
        self.requests: list[tuple[str, str]] = []

    def add_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """A Deployment of `replicas` pods."""
        self.objects["deployments"][namespace, name] = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }

    def add_hpa(self, namespace: str, name: str, low: int, high: int) -> None:
        """An HPA over the Deployment of the same name."""
        self.objects["hpas"][namespace, name] = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minReplicas": low, "maxReplicas": high},
        }

    def add_scaled_object(self, namespace: str, name: str) -> None:
        """A KEDA ScaledObject over the Deployment of the same name."""
        self.objects["scaledobjects"][namespace, name] = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minReplicaCount": 1, "maxReplicaCount": 8},
        }

    def app(self) -> web.Application:
        """The API server."""
        app = web.Application(middlewares=[self._auth])
        root = "/apis/{group}/{version}/namespaces/{namespace}/{kind}/{name}"
        app.router.add_get(root, self._get)
        app.router.add_patch(root, self._patch)
        app.router.add_get(root + "/scale", self._get_scale)
        app.router.add_patch(root + "/scale", self._patch_scale)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    def _find(self, request: web.Request) -> tuple[str, tuple[str, str]]:
        info = request.match_info
        store = _KINDS.get((f"{info['group']}/{info['version']}", info["kind"]))
        key = (info["namespace"], info["name"])
        if store is None or key not in self.objects[store]:
            raise web.HTTPNotFound(text='{"message": "not found"}')
        return store, key

    async def _get(self, request: web.Request) -> web.Response:
        store, key = self._find(request)
        return web.json_response(self.objects[store][key])

    async def _patch(self, request: web.Request) -> web.Response:
        if request.content_type != "application/merge-patch+json":
            return web.json_response({"message": "unsupported patch"}, status=415)
        store, key = self._find(request)
        patched = merge_patch(self.objects[store][key], await request.json())
        self.objects[store][key] = patched
        return web.json_response(patched)

    async def _get_scale(self, request: web.Request) -> web.Response:
        store, key = self._find(request)
        replicas = self.objects[store][key]["spec"]["replicas"]
        return web.json_response({"kind": "Scale", "spec": {"replicas": replicas}})

    async def _patch_scale(self, request: web.Request) -> web.Response:
        if request.content_type != "application/merge-patch+json":
            return web.json_response({"message": "unsupported patch"}, status=415)
        store, key = self._find(request)
        if store != "deployments":
            raise web.HTTPNotFound()
        replicas = int((await request.json())["spec"]["replicas"])
        self.objects[store][key]["spec"]["replicas"] = replicas
        return web.json_response({"kind": "Scale", "spec": {"replicas": replicas}})

    async def _pods(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        selector = request.query.get("labelSelector", "")
        name = selector.removeprefix("app.kubernetes.io/name=")
        deployment = self.objects["deployments"].get((namespace, name))
        replicas = deployment["spec"]["replicas"] if deployment else 0
        ready = [{"type": "Ready", "status": "True"}]
        items = [
            {
                "metadata": {"name": f"{name}-{n}"},
                "status": {"phase": "Running", "conditions": ready},
            }
            for n in range(replicas)
        ]
        return web.json_response({"items": items})
