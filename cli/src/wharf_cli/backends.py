"""Choosing a backend from settings: ``WHARF_BACKEND`` or ``--backend``, local, ecs or k8s."""

from __future__ import annotations

from collections.abc import Sequence

from wharf_cli.backend import Backend, BackendError
from wharf_cli.ecs import EcsBackend
from wharf_cli.kubernetes import KubernetesBackend, in_cluster_namespace, in_cluster_url
from wharf_cli.local import LocalBackend
from wharf_cli.settings import BackendSettings

BACKENDS = ("local", "ecs", "k8s")


def _k8s_token(settings: BackendSettings) -> str | None:
    if settings.k8s_token is not None:
        return settings.k8s_token.get_secret_value()
    try:
        return settings.k8s_token_file.read_text().strip()
    except OSError:
        return None


def open_backend(
    settings: BackendSettings, services: Sequence[str], kind: str | None = None
) -> Backend:
    """The backend named by `kind`, else by the settings; close it when done."""
    kind = kind or settings.backend
    if kind == "local":
        return LocalBackend(settings.wharf_home)
    if kind == "ecs":
        return EcsBackend(
            settings.ecs_cluster,
            services,
            prefix=settings.ecs_service_prefix,
            endpoint_url=settings.aws_endpoint_url,
        )
    if kind == "k8s":
        return KubernetesBackend(
            settings.k8s_api_url or in_cluster_url(),
            settings.k8s_namespace or in_cluster_namespace(),
            services,
            token=_k8s_token(settings),
            ca_file=settings.k8s_ca_file,
        )
    raise BackendError(f"unknown backend {kind!r} (one of {', '.join(BACKENDS)})")
