from __future__ import annotations

import typing

from wharf_carrier_ingest import carriers
from wharf_cli.demo_payloads import FORMATS
from wharf_gateway import models


def test_gateway_accepts_exactly_the_formats_there_are_adapters_for() -> None:
    assert sorted(typing.get_args(models.CarrierFormat)) == carriers()


def test_demo_knows_exactly_the_formats_there_are_adapters_for() -> None:
    assert sorted(FORMATS) == carriers()
