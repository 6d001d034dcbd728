"""Time parsing: the formats carriers really send, and zone placement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wharf_carrier_ingest.times import (
    combine,
    fixed_zone,
    localize,
    parse_iso,
    parse_us,
    x12_zone,
)


def test_offset_without_colon_and_z() -> None:
    assert parse_iso("2024-10-11T15:24:57+0200") == datetime(2024, 10, 11, 13, 24, 57, tzinfo=UTC)
    assert parse_iso("2018-03-02T07:53:47Z") == datetime(2018, 3, 2, 7, 53, 47, tzinfo=UTC)
    assert parse_iso("2023-04-05 18:56:00 UTC") == datetime(2023, 4, 5, 18, 56, tzinfo=UTC)


def test_dotnet_seven_digit_fraction_is_truncated() -> None:
    assert parse_iso("2026-04-17T23:43:17.6571145") == datetime(2026, 4, 17, 23, 43, 17, 657114)


def test_sentinel_and_blank_dates_are_missing() -> None:
    assert parse_iso("0001-01-01T00:00:00") is None
    assert parse_iso("") is None
    assert combine("0001-01-01", "00:00") is None


def test_us_twelve_hour_clock() -> None:
    assert parse_us("8/17/2021 7:11:26 PM") == datetime(2021, 8, 17, 19, 11, 26)
    assert parse_us("09/29/2025 12:05 AM") == datetime(2025, 9, 29, 0, 5)


def test_split_fields_read_four_and_six_digit_times() -> None:
    assert combine("20210210", "071356") == datetime(2021, 2, 10, 7, 13, 56)
    assert combine("20210218", "1020") == datetime(2021, 2, 18, 10, 20)
    assert combine("2011-02-03", "11:59:59") == datetime(2011, 2, 3, 11, 59, 59)


def test_abbreviations_are_fixed_offsets() -> None:
    zone = fixed_zone("EST")
    assert zone is not None
    assert localize(datetime(2011, 7, 1, 12, 0), zone) == datetime(2011, 7, 1, 17, 0, tzinfo=UTC)
    assert fixed_zone("XYZ") is None


def test_x12_time_codes() -> None:
    civil, standard, daylight = x12_zone("PT"), x12_zone("CS"), x12_zone("ED")
    assert civil is not None and standard is not None and daylight is not None
    summer = datetime(2019, 7, 1, 12, 0)
    assert localize(summer, civil) == datetime(2019, 7, 1, 19, 0, tzinfo=UTC)
    assert localize(summer, standard) - localize(summer, civil) == timedelta(hours=-1)
    assert localize(summer, daylight) == datetime(2019, 7, 1, 16, 0, tzinfo=UTC)
    assert x12_zone("LT") is None and x12_zone("") is None
