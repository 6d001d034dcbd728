"""Settings of the wharf command, from the same WHARF_* variables the services read."""

from __future__ import annotations

from pathlib import Path

from wharf_cli.home import Home
from wharf_common.settings import ServiceSettings


class CliSettings(ServiceSettings):
    """Connections as the services see them, plus where the local stack keeps its state."""

    service_name: str = "wharf-cli"
    home: Path = Path(".wharf")
    ready_timeout: float = 120.0
    services_file: Path | None = None

    @property
    def wharf_home(self) -> Home:
        """The state directory, made absolute so a detached supervisor finds it too."""
        return Home(self.home.absolute())
