"""One module per carrier format; importing this package registers them all."""

from __future__ import annotations

from . import (  # noqa: F401
    aftership,
    aramex,
    australiapost,
    bpost,
    canadapost,
    dhl_express,
    dhl_unified,
    dpd,
    easypost,
    edifact_iftsta,
    fedex,
    geodis,
    gls,
    haypost,
    hermes,
    landmark,
    laposte,
    nationex,
    royalmail,
    royalmail_csv,
    sendle,
    shippo,
    smartkargo,
    tnt,
    ups,
    usps,
    x12_214,
)
