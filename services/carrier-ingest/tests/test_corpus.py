"""Every carrier file of the shared corpus gives the expected canonical events."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wharf_carrier_ingest import Status, parse
from wharf_cli.demo_payloads import folder_payloads

REPO_ROOT = Path(__file__).resolve().parents[3]
# WHARF_CORPUS names the corpus; by default it sits beside the repository.
CORPUS = Path(os.environ.get("WHARF_CORPUS") or REPO_ROOT.parent / "shared" / "corpus") / "carriers"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared carrier corpus not present")


@dataclass(frozen=True)
class Expect:
    carrier: str
    events: int
    final: dict[str, Status] = field(default_factory=dict)
    times: dict[tuple[str, str], str] = field(default_factory=dict)
    not_found: tuple[str | None, ...] = ()
    errors: tuple[str, ...] = ()
    tracking_number: str | None = None


S = Status
EXPECTED: dict[str, Expect] = {
    "aftership_postnl_tracking.json": Expect(
        "aftership",
        6,
        {"3SKAAG5995399": S.IN_TRANSIT},
        {("3SKAAG5995399", "aftership:tag:InfoReceived"): "2021-03-20T14:29:27"},
    ),
    "aramex_nonexistent_waybill_soap.xml": Expect("aramex", 0, not_found=("1Z12345E6205277936",)),
    "australiapost_track_items.json": Expect(
        "australiapost",
        27,
        {
            "ET123456789AU": S.IN_TRANSIT,
            "LX123456789US": S.DELIVERED,
            "00123456789000123400": S.DELIVERED,
        },
        {("LX123456789US", "text:delivered"): "2021-01-21T00:04:27"},
    ),
    "bpost_item_tracking.xml": Expect(
        "bpost",
        3,
        {"323212345659900040669030": S.DELIVERED},
        {("323212345659900040669030", "bpost:state:L00"): "2012-11-23T06:11:18.923000"},
    ),
    "canadapost_tracking_detail.xml": Expect(
        "canadapost",
        6,
        {"7023210039414604": S.DELIVERED},
        {("7023210039414604", "canadapost:event:1496"): "2011-02-01T12:59:52"},
    ),
    "canadapost_x12_214.edi": Expect(
        "x12_214",
        19,
        {
            "4343638098050296": S.DELIVERY_FAILED,
            "4343638098146166": S.DELIVERED,
            "4343638931638575": S.CANCELLED,
            "4343638097845589": S.INFO_RECEIVED,
        },
        {
            ("4343638098050296", "x12_214:status:AH"): "2019-11-02T23:25:00",
            ("4343638097845589", "x12_214:status:XB"): "2019-11-03T20:34:00",
            ("4343638098181877", "x12_214:status:AF"): "2019-11-03T21:09:00",
        },
    ),
    "dhl_express_not_found.xml": Expect("dhl_express", 0, not_found=("123456789",)),
    "dhl_express_tracking_multi_awb.xml": Expect(
        "dhl_express",
        19,
        {"3180831640": S.DELIVERED, "7740842550": S.IN_TRANSIT, "1815115363": S.UNKNOWN},
        {
            ("3180831640", "dhl_express:event:OK"): "2009-08-31T08:09:00",
            ("7740842550", "dhl_express:event:PU"): "2009-08-26T02:00:00",
        },
    ),
    "dhl_unified_tracking.json": Expect(
        "dhl_unified",
        1,
        {"7777777770": S.INFO_RECEIVED},
        {("7777777770", "dhl_unified:statusCode:pre-transit"): "2018-03-02T06:53:47"},
    ),
    "dpd_parcel_lifecycle_soap.xml": Expect(
        "dpd",
        15,
        {"01234567890123": S.DELIVERY_FAILED},
        {("01234567890123", "dpd:status:PickedUp"): "2021-08-19T13:57:33"},
        tracking_number="01234567890123",
    ),
    "easypost_tracker_updated_webhook.json": Expect(
        "easypost",
        6,
        {"EZ4000000004": S.OUT_FOR_DELIVERY},
        {("EZ4000000004", "easypost:status:delivered"): "2014-11-19T10:51:54"},
    ),
    "fedex_track_duplicate_events.json": Expect(
        "fedex",
        18,
        {"776094337676": S.DELIVERED},
        {("776094337676", "fedex:event:DL"): "2024-04-26T16:26:00"},
    ),
    "fedex_track_error.json": Expect("fedex", 0, errors=("TRACKING.TRACKINGNUMBER.EMPTY",)),
    "geodis_suivi_envoi.json": Expect(
        "geodis",
        7,
        {"1G6CPLT3JB5U": S.UNKNOWN},
        {("1G6CPLT3JB5U", "geodis:situation:EXP"): "2020-01-17T13:18:35"},
    ),
    "gls_track_parcels.json": Expect(
        "gls",
        2,
        {"36301917596": S.IN_TRANSIT},
        {("36301917596", "gls:event:INTIAL.NORMAL"): "2024-10-07T08:46:14"},
    ),
    "haypost_order.json": Expect(
        "haypost",
        1,
        {"PAS105759416AM": S.INFO_RECEIVED},
        {("PAS105759416AM", "haypost:state:1"): "2024-06-10T04:59:20.529800"},
    ),
    "hermes_shipment_status.json": Expect(
        "hermes",
        4,
        {"H1234567890123456789": S.DELIVERED},
        {("H1234567890123456789", "hermes:event:3000"): "2024-01-20T06:00:00"},
    ),
    "landmark_delivery_failed.xml": Expect(
        "landmark",
        5,
        {"1Z999DD40456789017": S.EXCEPTION},
        {("1Z999DD40456789017", "landmark:event:50"): "2025-09-29T05:00:00"},
    ),
    "landmark_midnight_sorting.xml": Expect(
        "landmark",
        16,
        {"LE223553042BE": S.DELIVERED},
        {("LE223553042BE", "landmark:event:500"): "2025-11-03T06:14:00"},
    ),
    "landmark_out_for_delivery.xml": Expect(
        "landmark",
        5,
        {"1Z999BB20234567895": S.OUT_FOR_DELIVERY},
        {("1Z999BB20234567895", "landmark:event:300"): "2025-10-02T06:15:00"},
    ),
    "laposte_colissimo_suivi.json": Expect(
        "laposte",
        9,
        {"EW112720413FR": S.DELIVERED},
        {("EW112720413FR", "laposte:event:DI1"): "2023-03-09T08:38:00"},
    ),
    "nationex_shipment.json": Expect(
        "nationex",
        2,
        {"103882774": S.DELIVERY_FAILED},
        {("103882774", "text:delivery_failed"): "2021-03-31T17:31:00"},
    ),
    "royalmail_mailpieces_events.json": Expect(
        "royalmail",
        1,
        {"FQ087430672GB": S.IN_TRANSIT},
        {("FQ087430672GB", "royalmail:event:EVNMI"): "2016-10-20T09:04:00"},
    ),
    "royalmail_style_header_detail.csv": Expect(
        "royalmail_csv",
        4,
        {"XF460080188GB": S.IN_TRANSIT, "XF460080758GB": S.IN_TRANSIT},
        {("XF460080188GB", "royalmail:event:EVPPA"): "2020-05-04T07:50:48"},
    ),
    "sendle_tracking.json": Expect(
        "sendle",
        9,
        {"S3ND1E": S.DELIVERED},
        {("S3ND1E", "sendle:event:Out for Delivery"): "2023-04-05T13:10:00"},
        tracking_number="S3ND1E",
    ),
    "shippo_usps_track_status.json": Expect(
        "shippo",
        11,
        {"9205590164917337534322": S.DELIVERED},
        {("9205590164917337534322", "text:out_for_delivery"): "2016-12-08T10:29:00"},
    ),
    "smartkargo_dotnet_ticks.json": Expect(
        "smartkargo",
        1,
        {"XIA-12316189": S.IN_TRANSIT},
        {("XIA-12316189", "text:in_transit"): "2026-04-17T22:43:17.657114"},
    ),
    "tnt_track_response.xml": Expect(
        "tnt",
        16,
        {"123456782": S.DELIVERED},
        {("123456782", "tnt:status:OD"): "2021-02-04T07:47:00"},
        not_found=("22222222",),
    ),
    "ups_track_customs_release.json": Expect(
        "ups",
        1,
        {"1Z023E2X0214323462": S.IN_TRANSIT},
        {("1Z023E2X0214323462", "ups:code:SR"): "2021-02-10T12:13:56"},
    ),
    "ups_track_not_found.json": Expect("ups", 0, not_found=(None,)),
    "usps_tracking_v3.json": Expect(
        "usps",
        12,
        {"9400109104250532908587": S.DELIVERED},
        {("9400109104250532908587", "usps:event:01"): "2024-11-22T18:58:40"},
    ),
}


def test_every_corpus_file_has_an_expectation() -> None:
    files = {path.name for path in CORPUS.iterdir()} - {"hermes_eventcodes_cp1252.csv"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_gives_expected_events(name: str) -> None:
    expect = EXPECTED[name]
    payload = (CORPUS / name).read_bytes()

    result = parse(expect.carrier, payload, None, tracking_number=expect.tracking_number)

    assert len(result.events) == expect.events
    assert [n.tracking_number for n in result.not_found] == list(expect.not_found)
    assert [e.code for e in result.errors] == list(expect.errors)
    assert set(expect.final) <= set(result.tracking_numbers)
    for number, status in expect.final.items():
        latest = result.latest(number)
        assert latest is not None and latest.status == status, (number, latest)
    for (number, rule), moment in expect.times.items():
        matching = [
            e for e in result.events if e.tracking_number == number and e.classified_by == rule
        ]
        assert matching, (number, rule)
        wanted = datetime.fromisoformat(moment).replace(tzinfo=UTC)
        assert wanted in {e.occurred_at for e in matching}
    for event in result.events:
        assert event.occurred_at.tzinfo is UTC
        assert event.classified_by
    assert len({e.event_id for e in result.events}) == len(result.events)


def test_demo_posts_every_corpus_payload_in_a_format_that_reads_it() -> None:
    # What `wharf demo --carriers` posts parses without a dead letter, and the
    # shipments it makes are filed under the carrier the events are.
    payloads, skipped = folder_payloads(CORPUS)

    assert [name for name, _ in skipped] == ["hermes_eventcodes_cp1252.csv"]
    assert {payload.name for payload in payloads} == set(EXPECTED)
    for payload in payloads:
        expect = EXPECTED[payload.name]
        assert payload.carrier == expect.carrier, payload.name
        result = parse(
            payload.carrier,
            payload.body,
            payload.content_type,
            tracking_number=payload.tracking_number,
        )
        assert len(result.events) == expect.events, payload.name
        carriers = {carrier for carrier, _ in payload.shipments}
        assert {event.carrier for event in result.events} >= carriers, payload.name
        if payload.tracking_number is not None:
            # The demo makes a shipment for the number it names.
            numbers = {number for _, number in payload.shipments}
            assert {event.tracking_number for event in result.events} <= numbers, payload.name
    named = {payload.name for payload in payloads if payload.tracking_number}
    assert named == {"dpd_parcel_lifecycle_soap.xml", "sendle_tracking.json"}


def test_not_found_and_error_replies_produce_no_events() -> None:
    for name in ("dhl_express_not_found.xml", "ups_track_not_found.json", "fedex_track_error.json"):
        result = parse(EXPECTED[name].carrier, (CORPUS / name).read_bytes(), None)
        assert result.events == []
        assert result.not_found or result.errors


def test_hermes_code_table_decodes_windows_1252() -> None:
    from wharf_carrier_ingest import load_code_table

    entries = load_code_table("hermes", (CORPUS / "hermes_eventcodes_cp1252.csv").read_bytes())

    assert len(entries) == 294
    first = entries[0]
    assert first.code == "000000000" and first.short_code == "0000"
    assert "angekündigt" in first.texts["textLang DE"]
    assert all("\ufffd" not in text for e in entries for text in e.texts.values())
