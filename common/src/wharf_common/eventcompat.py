"""Compatibility of the event catalog with a snapshot of its previous schemas.

A reader built against the snapshot must still understand what publishers
send after a change, unless the change came with a new major version. So,
for an event whose major version did not move, these break the contract:

- the event type disappears;
- a field disappears;
- a field's type changes (its schema, ignoring titles, descriptions and
  defaults, is no longer the same);
- a field becomes required that was optional or new.

Run ``python -m wharf_common.eventcompat PATH`` to check against a snapshot
file, and add ``--write`` to replace it with the current schemas once a
release has shipped them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wharf_common import events

_COSMETIC = frozenset({"title", "description", "default", "examples"})


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every break from snapshot `old` to schemas `new` (both shaped as `events.schemas()`)."""
    problems: list[str] = []
    for type, before in sorted(old.items()):
        after = new.get(type)
        if after is None:
            problems.append(f"{type}: the event type was removed")
            continue
        if after["version"] > before["version"]:
            continue
        if after["version"] < before["version"]:
            problems.append(f"{type}: the major version went back to {after['version']}")
            continue
        problems.extend(_body_changes(type, before["schema"], after["schema"]))
    return problems


def _body_changes(type: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    old_fields = old.get("properties", {})
    new_fields = new.get("properties", {})
    for name, schema in sorted(old_fields.items()):
        if name not in new_fields:
            problems.append(f"{type}: field {name!r} was removed")
            continue
        before = _shape(schema, old)
        after = _shape(new_fields[name], new)
        if before != after:
            problems.append(
                f"{type}: field {name!r} changed type from {_show(before)} to {_show(after)}"
            )
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    problems.extend(f"{type}: field {name!r} is now required" for name in sorted(newly_required))
    return problems


def _shape(schema: Any, root: dict[str, Any]) -> Any:
    """`schema` with references inlined and cosmetic keys dropped, for comparison."""
    if isinstance(schema, list):
        return [_shape(item, root) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return _shape(target, root)
    return {k: _shape(v, root) for k, v in sorted(schema.items()) if k not in _COSMETIC}


def _show(shape: Any) -> str:
    return json.dumps(shape, sort_keys=True)


def snapshot_text() -> str:
    """The current schemas as the snapshot file holds them."""
    return json.dumps(events.schemas(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Check the catalog against a snapshot file, or rewrite it with --write."""
    parser = argparse.ArgumentParser(prog="python -m wharf_common.eventcompat")
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("--write", action="store_true", help="replace the snapshot")
    args = parser.parse_args(argv)

    old = json.loads(args.snapshot.read_text(encoding="utf-8")) if args.snapshot.exists() else {}
    problems = breaking_changes(old, events.schemas())
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    if args.write:
        args.snapshot.write_text(snapshot_text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
