"""The Kubernetes backend against an HTTP fake of the API server."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from wharf_cli.backend import BackendError
from wharf_cli.kubernetes import PAUSED_REPLICAS, RELEASED_BOUNDS, KubernetesBackend
from wharf_cli.main import main

sys.path.insert(0, str(Path(__file__).parent))
from fake_kubernetes import TOKEN, FakeKubernetes

NAMESPACE = "wharf"
SERVICES = ["gateway", "documents", "auth"]


@pytest.fixture
async def api(unused_tcp_port: int) -> AsyncIterator[tuple[FakeKubernetes, str]]:
    fake = FakeKubernetes()
    fake.add_deployment(NAMESPACE, "gateway", 2)
    fake.add_hpa(NAMESPACE, "gateway", 2, 10)
    fake.add_deployment(NAMESPACE, "documents", 1)
    fake.add_scaled_object(NAMESPACE, "documents")
    fake.add_deployment(NAMESPACE, "auth", 1)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield fake, f"http://127.0.0.1:{unused_tcp_port}"
    await runner.cleanup()


@pytest.fixture
async def backend(api: tuple[FakeKubernetes, str]) -> AsyncIterator[KubernetesBackend]:
    backend = KubernetesBackend(api[1], NAMESPACE, SERVICES, token=TOKEN)
    yield backend
    await backend.close()


async def test_status_reports_replicas_pods_and_owners(backend: KubernetesBackend) -> None:
    states = await backend.status()

    assert [(s.name, s.desired, s.ready, s.autoscaler, s.pinned) for s in states] == [
        ("gateway", 2, 2, "hpa", False),
        ("documents", 1, 1, "keda", False),
        ("auth", 1, 1, None, False),
    ]


async def test_scale_uses_the_scale_subresource(
    backend: KubernetesBackend, api: tuple[FakeKubernetes, str]
) -> None:
    fake, _ = api

    state = await backend.scale("auth", 3)

    assert ("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/auth/scale") in (
        fake.requests
    )
    assert (state.desired, state.ready, state.autoscaler) == (3, 3, None)


async def test_scale_pauses_keda_and_release_resumes_it(
    backend: KubernetesBackend, api: tuple[FakeKubernetes, str]
) -> None:
    fake, _ = api
    scaled = fake.objects["scaledobjects"]

    pinned = await backend.scale("documents", 4)
    annotations = dict(scaled[NAMESPACE, "documents"]["metadata"]["annotations"])
    released = await backend.release("documents")

    assert (pinned.desired, pinned.pinned) == (4, True)
    assert annotations == {PAUSED_REPLICAS: "4"}
    assert released.pinned is False
    assert scaled[NAMESPACE, "documents"]["metadata"].get("annotations") == {}


async def test_scale_pins_an_hpa_and_release_restores_its_bounds(
    backend: KubernetesBackend, api: tuple[FakeKubernetes, str]
) -> None:
    fake, _ = api
    hpa = fake.objects["hpas"]

    await backend.scale("gateway", 5)
    first = dict(hpa[NAMESPACE, "gateway"]["spec"])
    pinned = await backend.scale("gateway", 3)
    saved = json.loads(hpa[NAMESPACE, "gateway"]["metadata"]["annotations"][RELEASED_BOUNDS])
    released = await backend.release("gateway")

    assert first == {"minReplicas": 5, "maxReplicas": 5}
    assert (pinned.desired, pinned.pinned) == (3, True)
    assert saved == {"min": 2, "max": 10}
    assert hpa[NAMESPACE, "gateway"]["spec"] == {"minReplicas": 2, "maxReplicas": 10}
    assert released.pinned is False


async def test_hpa_cannot_be_pinned_at_zero(backend: KubernetesBackend) -> None:
    with pytest.raises(BackendError, match="cannot hold 0"):
        await backend.scale("gateway", 0)


async def test_bad_token_is_reported(api: tuple[FakeKubernetes, str]) -> None:
    backend = KubernetesBackend(api[1], NAMESPACE, SERVICES, token="wrong")
    try:
        with pytest.raises(BackendError, match="401"):
            await backend.status()
    finally:
        await backend.close()


async def test_unknown_service_is_refused(backend: KubernetesBackend) -> None:
    with pytest.raises(BackendError, match="unknown service 'nope'"):
        await backend.scale("nope", 1)


async def test_wharf_scale_and_status_on_k8s(
    api: tuple[FakeKubernetes, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, url = api
    monkeypatch.setenv("WHARF_K8S_API_URL", url)
    monkeypatch.setenv("WHARF_K8S_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("WHARF_K8S_TOKEN", TOKEN)
    monkeypatch.setenv("WHARF_MANAGEMENT_URL", "http://127.0.0.1:9/")

    scaled = await asyncio.to_thread(main, ["scale", "documents", "3", "--backend", "k8s"])
    pinned = fake.objects["scaledobjects"][NAMESPACE, "documents"]["metadata"]["annotations"]
    pinned = dict(pinned)
    released = await asyncio.to_thread(
        main, ["scale", "documents", "--release", "--backend", "k8s"]
    )
    capsys.readouterr()
    listed = await asyncio.to_thread(main, ["status", "--json", "--backend", "k8s"])
    report = json.loads(capsys.readouterr().out)

    assert (scaled, released, listed) == (0, 0, 0)
    assert pinned == {PAUSED_REPLICAS: "3"}
    assert report["backend"] == "k8s"
    documents = next(s for s in report["services"] if s["name"] == "documents")
    assert (documents["desired"], documents["autoscaler"], documents["pinned"]) == (
        3,
        "keda",
        False,
    )
