"""The project's own fixtures, one per payload family, with known answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from wharf_carrier_ingest import Status, carriers, parse, unknown_code_counts
from wharf_carrier_ingest.classify import classify_text
from wharf_carrier_ingest.codetables import load_code_table, suggest_statuses

Read = Callable[[str], bytes]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_registry_lists_every_format() -> None:
    names = carriers()

    assert len(names) == 27
    assert {"dhl_express", "dhl_unified", "royalmail_csv", "x12_214", "edifact_iftsta"} <= set(
        names
    )


def test_french_json_keeps_text_and_counts_unknown_code(fixture_bytes: Read) -> None:
    before = unknown_code_counts().get(("laposte", "QQ9"), 0)

    result = parse("laposte", fixture_bytes("laposte_fr_unknown_code.json"), "application/json")

    by_code = {event.carrier_code: event for event in result.events}
    assert by_code["DR1"].status is Status.INFO_RECEIVED
    assert by_code["QQ7"].status is Status.DELIVERED
    assert by_code["QQ7"].classified_by == "text:delivered"
    assert by_code["QQ7"].description == "Votre colis a été livré à votre gardien."
    assert by_code["QQ9"].status is Status.UNKNOWN
    assert unknown_code_counts()[("laposte", "QQ9")] == before + 1
    assert [n.tracking_number for n in result.not_found] == ["6A00000000002"]


def test_soap_results_take_location_zone(fixture_bytes: Read) -> None:
    result = parse("aramex", fixture_bytes("aramex_tracking_soap.xml"), "text/xml")

    created, delivered = result.events
    assert created.status is Status.INFO_RECEIVED
    assert created.occurred_at == utc("2024-05-01T05:30:00")
    assert created.location is not None and created.location.country == "AE"
    assert delivered.status is Status.DELIVERED
    assert delivered.classified_by == "aramex:update:SH005"
    assert delivered.occurred_at == utc("2024-05-02T13:45:00")


def test_cp1252_csv_decodes_and_classifies(fixture_bytes: Read) -> None:
    result = parse("royalmail_csv", fixture_bytes("royalmail_cp1252.csv"), "text/csv")

    delivered = result.latest("XA123456785GB")
    assert delivered is not None
    assert delivered.description == "Zugestellt im Café"
    assert delivered.location is not None and delivered.location.city is not None
    assert "Café" in delivered.location.city
    assert delivered.status is Status.DELIVERED
    assert delivered.occurred_at == utc("2024-01-15T14:30:00")
    unknown = result.latest("XA123456799GB")
    assert unknown is not None and unknown.status is Status.UNKNOWN


def test_cp1252_code_table_decodes(fixture_bytes: Read) -> None:
    entries = load_code_table("hermes", fixture_bytes("hermes_codes_cp1252.csv"))

    assert [e.short_code for e in entries] == ["1100", "3500", "3731"]
    assert entries[0].texts["Text DE"].endswith("Nürnberg sortiert.")
    assert "Straße" in entries[1].texts["Text DE"]
    suggestions = suggest_statuses(entries)
    assert suggestions["000000200"] is not None
    assert suggestions["000000200"].status is Status.DELIVERED
    assert suggestions["000000300"] is not None
    assert suggestions["000000300"].status is Status.DELIVERY_FAILED


def test_declared_charset_wins(fixture_bytes: Read) -> None:
    result = parse(
        "royalmail_csv", fixture_bytes("royalmail_cp1252.csv"), "text/csv; charset=cp1252"
    )

    assert result.latest("XA123456785GB") is not None


def test_x12_214_delimiters_zones_and_duplicates(fixture_bytes: Read) -> None:
    result = parse("x12_214", fixture_bytes("x12_214_cp1252.edi"), None)

    assert [e.status for e in result.events] == [Status.OUT_FOR_DELIVERY, Status.DELIVERED]
    assert result.duplicates_dropped == 1
    out, delivered = result.events
    assert out.occurred_at == utc("2024-06-01T12:15:00")
    assert out.time_basis == "declared:America/New_York"
    assert delivered.occurred_at == utc("2024-06-01T17:42:00")
    assert delivered.time_basis == "location:America/Toronto"
    assert out.operator == "WHRF"


def test_edifact_iftsta(fixture_bytes: Read) -> None:
    result = parse("edifact_iftsta", fixture_bytes("iftsta_delivered.edi"), None)

    collected, delivered = (e for e in result.events if e.tracking_number == "JJD0099887766")
    assert collected.status is Status.IN_TRANSIT
    assert collected.occurred_at == utc("2024-03-13T15:30:00")
    assert collected.location is not None and collected.location.country == "DE"
    assert delivered.status is Status.DELIVERED
    assert delivered.occurred_at == utc("2024-03-14T09:05:00")
    assert delivered.time_basis == "offset"
    not_collected = result.latest("JJD0099887799")
    assert not_collected is not None
    assert not_collected.status is Status.EXCEPTION
    assert not_collected.incident_reason == "Zahlung nicht erhalten"


def test_exact_duplicates_are_dropped(fixture_bytes: Read) -> None:
    result = parse("fedex", fixture_bytes("fedex_exact_duplicates.json"), None)

    assert len(result.events) == 3
    assert result.duplicates_dropped == 1
    assert result.latest("700000000001") is not None
    assert result.events[0].status is Status.UNKNOWN


def test_zone_override_replaces_carrier_default() -> None:
    payload = (
        b"<TrackResponse><Result><Packages><Package><TrackingNumber>LM1</TrackingNumber>"
        b"<Events><Event><Status>Processed</Status><DateTime>2025-01-10 12:00:00</DateTime>"
        b"<Location></Location><EventCode>75</EventCode></Event></Events>"
        b"</Package></Packages></Result></TrackResponse>"
    )

    default = parse("landmark", payload)
    overridden = parse("landmark", payload, zone_overrides={"landmark": "America/New_York"})

    assert default.events[0].occurred_at == utc("2025-01-10T11:00:00")
    assert overridden.events[0].occurred_at == utc("2025-01-10T17:00:00")
    assert overridden.events[0].time_basis == "carrier:America/New_York"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Your parcel has been delivered", Status.DELIVERED),
        ("Votre colis a été livré", Status.DELIVERED),
        ("Die Sendung wurde zugestellt", Status.DELIVERED),
        ("Uw pakket is bezorgd", Status.DELIVERED),
        ("Su envío ha sido entregado", Status.DELIVERED),
        ("Out for delivery", Status.OUT_FOR_DELIVERY),
        ("Votre colis est en cours de livraison", Status.OUT_FOR_DELIVERY),
        ("Die Sendung ist in Zustellung", Status.OUT_FOR_DELIVERY),
        ("Empfänger nicht angetroffen", Status.DELIVERY_FAILED),
        ("Destinataire absent, avis de passage déposé", Status.DELIVERY_FAILED),
        ("Pakket niet bezorgd", Status.DELIVERY_FAILED),
        ("Retour à l'expéditeur", Status.RETURNED),
        ("Envío en tránsito", Status.IN_TRANSIT),
        ("Zending is onderweg", Status.IN_TRANSIT),
        ("Shipment information received", Status.INFO_RECEIVED),
    ],
)
def test_multilingual_text_rules(text: str, status: Status) -> None:
    verdict = classify_text([text])

    assert verdict is not None and verdict.status is status
