"""The local stack's state directory, WHARF_HOME (``./.wharf`` by default)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    """Paths under WHARF_HOME: task logs in ``logs/``, the supervisor's address in ``run/``."""

    root: Path

    @property
    def logs(self) -> Path:
        """Directory of task logs, ``<service>-<n>.log``."""
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Directory of the running supervisor's files."""
        return self.root / "run"

    @property
    def control_socket(self) -> Path:
        """Unix socket of the supervisor's control API."""
        return self.run / "control.sock"

    @property
    def supervisor_file(self) -> Path:
        """JSON with the supervisor's pid and control address."""
        return self.run / "supervisor.json"

    @property
    def supervisor_log(self) -> Path:
        """Log of a detached supervisor."""
        return self.logs / "supervisor.log"

    def task_log(self, task: str) -> Path:
        """Log file of one task, kept across its restarts."""
        return self.logs / f"{task}.log"

    def create(self) -> None:
        """Make the directories the stack writes to."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
