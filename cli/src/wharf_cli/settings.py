"""Settings of the wharf command, from the same WHARF_* variables the services read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from wharf_cli.home import Home
from wharf_common.settings import ServiceSettings

_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class BackendSettings(BaseSettings):
    """Where tasks run and how to reach that place; the gateway's ops API reads them too."""

    model_config = SettingsConfigDict(env_prefix="WHARF_", extra="ignore")

    backend: Literal["local", "ecs", "k8s"] = "local"
    home: Path = Path(".wharf")
    services_file: Path | None = None

    ecs_cluster: str = "wharf"
    ecs_service_prefix: str = "wharf-"
    aws_endpoint_url: str | None = None

    # Without an API URL, the in-cluster service account's address, token and CA are used.
    k8s_api_url: str | None = None
    k8s_namespace: str | None = None
    k8s_token: SecretStr | None = None
    k8s_token_file: Path = _SERVICE_ACCOUNT / "token"
    k8s_ca_file: Path | None = _SERVICE_ACCOUNT / "ca.crt"

    @property
    def wharf_home(self) -> Home:
        """The state directory, made absolute so a detached supervisor finds it too."""
        return Home(self.home.absolute())


class CliSettings(ServiceSettings, BackendSettings):
    """Connections as the services see them, plus where the local stack keeps its state."""

    service_name: str = "wharf-cli"
    ready_timeout: float = 120.0
