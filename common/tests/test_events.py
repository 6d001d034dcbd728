from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import Field

from wharf_common import asyncapi, eventcompat, events
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.errors import InvalidMessage

SNAPSHOT = Path(__file__).parent / "data" / "event-schemas.json"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)

EXAMPLES: list[events.Event] = [
    events.ShipmentStatusChanged(
        shipment_id=uuid.uuid4(),
        carrier="dhl_express",
        tracking_number="1234567890",
        reference="PO-1",
        previous_status=events.ShipmentStatus.IN_TRANSIT,
        status=events.ShipmentStatus.DELIVERED,
        status_at=NOW,
        event_id="evt-1",
    ),
    events.DocumentRendered(id=uuid.uuid4(), pages=2, bytes=1234, batch_id=None),
    events.DocumentFailed(id=uuid.uuid4(), reason="render_timeout", detail="60 s", batch_id=None),
    events.DocumentBatchCompleted(
        id=uuid.uuid4(), status="done", total=3, done=3, failed=0, bundle_format="zip"
    ),
    events.CarrierDocumentsCompleted(
        job_id=uuid.uuid4(), carrier="ups", manifest_ref="t/m.json", stored=4, missing=1
    ),
]


def test_every_catalog_event_has_an_example() -> None:
    assert {type(e).event_type for e in EXAMPLES} == set(events.event_types())


@pytest.mark.parametrize("body", EXAMPLES, ids=lambda e: type(e).event_type)
def test_event_envelope_round_trips_through_the_wire(body: events.Event) -> None:
    envelope = events.event_envelope(body, tenant="t1", correlation_id="c1")

    received = Envelope.decode(envelope.encode())

    assert received.type == body.event_type
    assert received.schema_version == body.version
    assert events.parse_event(received) == body
    assert events.contract_problems(received) == []


def test_event_keeps_its_causes_correlation_but_not_its_deadline() -> None:
    cause = Envelope(type="test.cause", correlation_id="req-9", deadline=NOW)

    envelope = events.event_envelope(EXAMPLES[1], tenant="t1", cause=cause)

    assert envelope.correlation_id == "req-9"
    assert envelope.deadline is None


def test_parse_event_ignores_unknown_fields_for_rolling_deploys() -> None:
    envelope = events.event_envelope(EXAMPLES[1], tenant="t1")
    envelope.body["added_later"] = True

    assert events.parse_event(envelope) == EXAMPLES[1]
    assert events.contract_problems(envelope) == [
        "document.rendered: undeclared field 'added_later'"
    ]


def test_parse_event_refuses_unknown_types_versions_and_bad_bodies() -> None:
    good = events.event_envelope(EXAMPLES[1], tenant="t1")

    with pytest.raises(InvalidMessage, match="unknown event"):
        events.parse_event(good.model_copy(update={"type": "document.exploded"}))
    with pytest.raises(InvalidMessage, match="unknown event"):
        events.parse_event(good.model_copy(update={"schema_version": 9}))
    with pytest.raises(InvalidMessage, match="does not match"):
        events.parse_event(good.model_copy(update={"body": {"id": "x"}}))


async def test_a_published_event_that_breaks_its_model_fails_the_test(
    amqp_url: str, published_events_match_catalog: list[str]
) -> None:
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    try:
        await bus.publish_event(events.event_envelope(EXAMPLES[1], tenant="t1"))
        assert published_events_match_catalog == []
        bad = Envelope(type="document.rendered", tenant="t1", body={"id": "nope", "pages": 1})
        await bus.publish_event(bad)
        await bus.publish_event(Envelope(type="document.vanished", body={}))
    finally:
        await bus.close()

    problems = list(published_events_match_catalog)
    published_events_match_catalog.clear()
    assert any("id: Input should be a valid UUID" in p for p in problems)
    assert any("bytes: Field required" in p for p in problems)
    assert "document.vanished v1 is not in the event catalog" in problems


def test_asyncapi_document_is_generated_from_the_catalog() -> None:
    document = asyncapi.document()

    assert document["asyncapi"] == "3.0.0"
    assert json.loads(json.dumps(document)) == document
    for type in events.event_types():
        channel = document["channels"][type.replace(".", "_")]
        assert channel["address"] == type
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "wharf.events"
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref


@pytest.mark.parametrize("body", EXAMPLES, ids=lambda e: type(e).event_type)
def test_asyncapi_payload_schema_accepts_a_published_envelope(body: events.Event) -> None:
    document = asyncapi.document()
    name = type(body).__name__
    schema = {**document["components"]["schemas"][f"{name}Envelope"]}
    schema["components"] = document["components"]
    envelope = json.loads(events.event_envelope(body, tenant="t1").encode())

    jsonschema.validate(envelope, schema)


def test_catalog_is_compatible_with_the_committed_snapshot() -> None:
    old = json.loads(SNAPSHOT.read_text(encoding="utf-8"))

    assert eventcompat.breaking_changes(old, events.schemas()) == []


def test_committed_snapshot_is_current() -> None:
    # Compatible additions still change the contract: record them, so the
    # next change is checked against them.
    assert SNAPSHOT.read_text(encoding="utf-8") == eventcompat.snapshot_text(), (
        "run: python -m wharf_common.eventcompat common/tests/data/event-schemas.json --write"
    )


class _Retyped(events.Event):
    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str
    reference: str | None = None
    previous_status: events.ShipmentStatus | None = None
    status: events.ShipmentStatus
    status_at: int = Field(description="now seconds since the epoch")
    event_id: str
    signed_by: str


class _Removed(events.Event):
    id: uuid.UUID
    pages: int
    batch_id: uuid.UUID | None = None
    renderer: str | None = None


def _with(type: str, model: type[events.Event], version: int | None = None) -> dict[str, Any]:
    schemas = events.schemas()
    schemas[type] = {
        "version": version or schemas[type]["version"],
        "schema": model.model_json_schema(),
    }
    return schemas


def test_compatibility_check_catches_a_retyped_or_newly_required_field() -> None:
    old = events.schemas()

    problems = eventcompat.breaking_changes(old, _with("shipment.status_changed", _Retyped))

    assert len(problems) == 2
    assert problems[0].startswith("shipment.status_changed: field 'status_at' changed type")
    assert problems[1] == "shipment.status_changed: field 'signed_by' is now required"


def test_compatibility_check_catches_a_removed_field_or_event() -> None:
    old = events.schemas()
    gone = events.schemas()
    del gone["document.failed"]

    removed = eventcompat.breaking_changes(old, _with("document.rendered", _Removed))

    assert removed == ["document.rendered: field 'bytes' was removed"]
    assert eventcompat.breaking_changes(old, gone) == [
        "document.failed: the event type was removed"
    ]


def test_a_new_major_version_may_break_and_an_optional_field_may_be_added() -> None:
    old = events.schemas()

    assert eventcompat.breaking_changes(old, _with("document.rendered", _Removed, 2)) == []
    old["document.rendered"]["schema"]["properties"].pop("batch_id")
    assert eventcompat.breaking_changes(old, events.schemas()) == []


def test_compatibility_command_fails_on_a_break(tmp_path: Path) -> None:
    snapshot = tmp_path / "schemas.json"
    old = events.schemas()
    old["document.rendered"]["schema"]["properties"]["colour"] = {"type": "string"}
    snapshot.write_text(json.dumps(old), encoding="utf-8")

    assert eventcompat.main([str(snapshot)]) == 1
    assert eventcompat.main([str(tmp_path / "new.json"), "--write"]) == 0
    assert eventcompat.main([str(tmp_path / "new.json")]) == 0


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node
