"""What `wharf status`, `up` and `scale` print: a table, or JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from wharf_cli.backend import ServiceState, TaskState

_COLUMNS = ("SERVICE", "DESIRED", "RUNNING", "READY", "QUEUE", "TASKS")


def _task_word(task: TaskState) -> str:
    if task.phase in ("stopping", "backoff"):
        word = "draining" if task.phase == "stopping" else "restarting"
    else:
        word = "ready" if task.ready else "not ready"
    if task.restarts:
        word += f" ({task.restarts} restarts)"
    return f"{task.name} {word}"


def status_table(states: Sequence[ServiceState], depths: Mapping[str, int] | None) -> str:
    """One row per service; queue depth shows ``?`` when the management API is away."""
    rows = [list(_COLUMNS)]
    for state in states:
        depth = "?" if depths is None else str(depths.get(state.name, 0))
        tasks = ", ".join(_task_word(task) for task in state.tasks) or "-"
        if state.autoscaler:
            owner = f"{state.autoscaler} pinned" if state.pinned else state.autoscaler
            tasks = f"[{owner}] {tasks}"
        counts = [str(state.desired), str(state.running), str(state.ready)]
        rows.append([state.name, *counts, depth, tasks])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def status_json(
    states: Sequence[ServiceState], depths: Mapping[str, int] | None, *, backend: str = "local"
) -> str:
    """The same as `status_table`, for programs; ``queue_depth`` is null when unknown."""
    services: list[dict[str, Any]] = []
    for state in states:
        services.append(
            {
                "name": state.name,
                "desired": state.desired,
                "running": state.running,
                "ready": state.ready,
                "queue_depth": None if depths is None else depths.get(state.name, 0),
                "autoscaler": state.autoscaler,
                "pinned": state.pinned,
                "tasks": [task.model_dump() for task in state.tasks],
            }
        )
    return json.dumps({"backend": backend, "services": services}, indent=2)
