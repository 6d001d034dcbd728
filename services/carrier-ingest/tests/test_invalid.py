"""Malformed and hostile payloads fail with one clear InvalidPayload."""

from __future__ import annotations

import pytest

from wharf_carrier_ingest import InvalidPayload, UnknownCarrier, parse

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<TrackResponse><Consignment><ConsignmentNumber>&lol3;</ConsignmentNumber></Consignment></TrackResponse>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<itemTracking><itemCode>&xxe;</itemCode></itemTracking>"""


@pytest.mark.parametrize(
    ("carrier", "payload", "reason"),
    [
        ("fedex", b'{"output": {"completeTrackResults": [', "malformed JSON"),
        ("ups", b"", "empty payload"),
        ("ups", b'{"something": "else"}', "trackResponse"),
        ("tnt", b"<TrackResponse><Consignment>", "malformed XML"),
        ("bpost", b"<unrelated/>", "unexpected root"),
        ("x12_214", b"GS*QM*A*B~ST*214*1~", "ISA"),
        ("edifact_iftsta", b"UNB+UNOC:3+A+B+240101:1200+1'UNH+1+", "IFTSTA"),
        ("edifact_iftsta", b"hello", "UNA or UNB"),
        ("royalmail_csv", b"D,B9,X1,,,,EVPPA\n", "before its H row"),
        ("usps", b'{"trackingNumber": "9400", "trackingEvents": [{"eventCode": "01"}]}', "time"),
        ("dpd", b"<Envelope><Body><getTrackingDataResponse/></Body></Envelope>", "trackingresult"),
    ],
)
def test_malformed_payload_raises_invalid_payload(
    carrier: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse(carrier, payload, None)

    assert reason in str(caught.value)
    assert caught.value.carrier == carrier


@pytest.mark.parametrize(("carrier", "payload"), [("tnt", BOMB), ("bpost", XXE)])
def test_entity_expansion_and_external_entities_are_refused(carrier: str, payload: bytes) -> None:
    with pytest.raises(InvalidPayload, match="XML refused"):
        parse(carrier, payload, "application/xml")


def test_dpd_without_parcel_number_is_refused() -> None:
    payload = (
        b"<Envelope><Body><getTrackingDataResponse><trackingresult><statusInfo>"
        b"<status>Courier</status><statusHasBeenReached>true</statusHasBeenReached>"
        b"<date><content>8/18/2021 7:34:34 AM</content></date>"
        b"</statusInfo></trackingresult></getTrackingDataResponse></Body></Envelope>"
    )

    with pytest.raises(InvalidPayload, match="pass tracking_number"):
        parse("dpd", payload, None)


def test_unknown_carrier_is_its_own_error() -> None:
    with pytest.raises(UnknownCarrier):
        parse("pigeon", b"{}", None)
