from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from wharf_documents.errors import TemplateError
from wharf_documents.templating import address, format_date_value, money, render_template


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
        "{% set x = [] %}{{ x.append(1) }}",
    ],
)
def test_sandbox_blocks_attribute_attacks(source: str) -> None:
    with pytest.raises(TemplateError, match=r"forbidden in a template: .* unsafe"):
        render_template(source, {})


def test_sandbox_bounds_huge_repetition_and_powers() -> None:
    with pytest.raises(TemplateError, match="too long"):
        render_template("{{ 'x' * 100000000 }}", {})
    with pytest.raises(TemplateError, match="exponent"):
        render_template("{{ 10 ** 100000 }}", {})


@pytest.mark.parametrize(
    "source",
    [
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% set s = 'x' * 600000 %}{{ s ~ 'y' ~ s }}",
    ],
)
def test_sandbox_bounds_strings_and_lists_joined_by_operators(source: str) -> None:
    with pytest.raises(TemplateError, match=r"would be too long \(over 1000000\)"):
        render_template(source, {})


def test_joining_operators_keep_their_meaning() -> None:
    source = (
        "{{ 1 + 2 }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ x ~ 3 ~ none }} {{ x|safe ~ x }}"
        "{% autoescape false %} {{ x ~ '!' }}{% endautoescape %}"
    )

    html = render_template(source, {"x": "<i>"})

    assert html == "3 ab [1, 2] &lt;i&gt;3None <i>&lt;i&gt; <i>!"


def test_values_are_autoescaped() -> None:
    html = render_template("<p>{{ name }}</p>", {"name": "<script>alert(1)</script>"})

    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_missing_value_is_a_clear_template_error() -> None:
    with pytest.raises(TemplateError, match="missing value: 'customer' is undefined"):
        render_template("{{ customer.name }}", {})


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match="syntax error on line 2"):
        render_template("ok\n{% if %}", {})


def test_runtime_error_becomes_template_error() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render_template("{{ 1 / 0 }}", {})


def test_money_rounds_half_up_without_float_surprises() -> None:
    assert money("2.665", "EUR", "en_IE") == "€2.67"
    assert money(0.1 + 0.2, "USD") == "$0.30"
    assert money(Decimal("1234.5"), "EUR", "de_DE") == "1.234,50\xa0€"
    assert money(1234, "JPY", "ja_JP") == "￥1,234"


def test_money_rejects_what_is_not_an_amount() -> None:
    with pytest.raises(TemplateError, match="not a number"):
        render_template("{{ 'abc' | money('EUR') }}", {})
    with pytest.raises(TemplateError, match="not an ISO 4217 currency"):
        render_template("{{ 1 | money('NOPE') }}", {})
    with pytest.raises(TemplateError, match="money"):
        render_template("{{ 1 | money('EUR', 'xx_YY') }}", {})


def test_date_accepts_iso_strings_and_dates() -> None:
    assert format_date_value("2024-05-14", "%d.%m.%Y") == "14.05.2024"
    assert format_date_value(date(2024, 5, 14), "long") == "May 14, 2024"
    assert format_date_value("2024-05-14T09:30:00Z", "d MMM y", "de_DE") == "14 Mai 2024"
    with pytest.raises(TemplateError, match="not an ISO 8601 date"):
        render_template("{{ 'yesterday' | date('short') }}", {})


def test_address_escapes_each_line() -> None:
    html = address(
        {"name": "Ada <b>", "line1": "5 Example St", "postal_code": "SW1A", "city": "London"}
    )

    assert str(html) == "Ada &lt;b&gt;<br>5 Example St<br>SW1A London"
    rendered = render_template("{{ a | address }}", {"a": "x & y\n\nz"})
    assert rendered == "x &amp; y<br>z"


def test_barcode_and_qr_are_inline_svg() -> None:
    html = render_template(
        "{{ barcode_code128(code) }}{{ qr(url) }}", {"code": "WH<123>", "url": "https://x/?a&b"}
    )

    assert html.count("<svg") == 2
    assert "<?xml" not in html
    assert "WH&lt;123&gt;" in html


def test_barcode_of_an_unencodable_value_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="Code 128"):
        render_template("{{ barcode_code128('') }}", {})
