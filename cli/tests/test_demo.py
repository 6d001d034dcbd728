"""The demo's own parts that need no stack: payload mapping, PDFs, FTP settings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from wharf_cli import demo_ftp
from wharf_cli.demo_payloads import NotAPayload, carrier_for, folder_payloads, own_payloads
from wharf_cli.main import build_parser


@pytest.mark.parametrize(
    ("name", "head", "carrier"),
    [
        ("fedex_track_duplicate_events.json", b"{", "fedex"),
        ("dhl_express_tracking_multi_awb.xml", b"<", "dhl_express"),
        ("royalmail_style_header_detail.csv", b"H,", "royalmail_csv"),
        ("royalmail_mailpieces_events.json", b"{", "royalmail"),
        ("canadapost_x12_214.edi", b"ISA*00*", "x12_214"),
        ("delivered.edi", b"UNA:+.? '", "edifact_iftsta"),
    ],
)
def test_file_names_map_to_carrier_formats(name: str, head: bytes, carrier: str) -> None:
    assert carrier_for(Path(name), head) == carrier


@pytest.mark.parametrize(
    ("name", "head", "reason"),
    [
        ("notes.json", b"{", "no carrier format matches its name"),
        ("hermes_eventcodes_cp1252.csv", b"3x3", "hermes payloads are JSON, not CSV"),
        ("fedex_scan.xml", b"<", "fedex payloads are JSON, not XML"),
        ("manifest.edi", b"HDR", "an .edi file that is neither X12 nor EDIFACT"),
        ("fedex_label.pdf", b"%PDF", "no carrier format is a .pdf file"),
    ],
)
def test_files_no_format_reads_are_refused_with_the_reason(
    name: str, head: bytes, reason: str
) -> None:
    with pytest.raises(NotAPayload) as refused:
        carrier_for(Path(name), head)

    assert str(refused.value) == reason


def test_folder_skips_files_it_cannot_map_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "fedex_one.json").write_text('{"trackingNumber": "794600000999"}')
    (tmp_path / "hermes_codes.csv").write_text("code;text\n")
    (tmp_path / "readme.md").write_text("not a payload")

    payloads, skipped = folder_payloads(tmp_path)

    assert [p.carrier for p in payloads] == ["fedex"]
    assert payloads[0].shipments == [("fedex", "794600000999")]
    assert payloads[0].content_type == "application/json"
    assert payloads[0].tracking_number is None
    assert skipped == [
        ("hermes_codes.csv", "hermes payloads are JSON, not CSV"),
        ("readme.md", "no carrier format is a .md file"),
    ]


def test_payloads_that_name_no_parcel_get_a_number_and_its_shipment(tmp_path: Path) -> None:
    (tmp_path / "dpd_reply.xml").write_text("<trackingresult/>")
    (tmp_path / "sendle_labelled.json").write_text('{"sendle_reference": "S3ND1E42"}')

    dpd, sendle = folder_payloads(tmp_path)[0]

    assert dpd.tracking_number is not None
    assert dpd.shipments == [("dpd", dpd.tracking_number)]
    assert dpd.content_type == "text/xml"
    assert sendle.tracking_number == "S3ND1E42"
    assert sendle.shipments == [("sendle", "S3ND1E42")]


def test_own_payloads_name_their_shipments() -> None:
    payloads = own_payloads()

    assert {p.carrier for p in payloads} == {"fedex", "aramex", "royalmail_csv"}
    for payload in payloads:
        assert payload.shipments
        for _, number in payload.shipments:
            assert number.encode() in payload.body


def test_generated_pdf_reads_back() -> None:
    reader = PdfReader(io.BytesIO(demo_ftp.pdf("Proof of delivery 794600000101")))

    assert len(reader.pages) == 1
    assert "794600000101" in reader.pages[0].extract_text()


def test_ftp_config_comes_from_carrier_ingest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    config = demo_ftp.FtpConfig("dhl", "127.0.0.1", 2100, "u", "p")
    monkeypatch.setenv("WHARF_CARRIER_FTP", config.setting())

    assert demo_ftp.config_from_env() == config
    assert json.loads(config.setting())["dhl"]["port"] == 2100


def test_ftp_config_defaults_to_what_up_demo_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHARF_CARRIER_FTP", raising=False)

    assert demo_ftp.config_from_env() == demo_ftp.default_config()


def test_up_takes_demo_and_carriers() -> None:
    args = build_parser().parse_args(["up", "--demo", "--carriers", "corpus"])

    assert args.demo and args.carriers == Path("corpus")
