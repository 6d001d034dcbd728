"""Sandboxed Jinja2 templates and the filters documents need."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import jinja2
from babel import UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import (
    UnknownCurrencyError,
    format_currency,
    get_currency_precision,
    is_currency,
)
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape, soft_str

from wharf_documents.barcodes import BarcodeValueError, code128_svg, qr_svg
from wharf_documents.errors import TemplateError

DEFAULT_LOCALE = "en_US"
MAX_SEQUENCE_RESULT = 1_000_000
MAX_EXPONENT = 256

_ADDRESS_FIELDS: tuple[tuple[str, ...], ...] = (
    ("name",),
    ("company",),
    ("line1", "street"),
    ("line2", "street2"),
    ("line3",),
)


class _FilterError(ValueError):
    """A filter given a value it cannot format; shown to the template's author."""


class _CodeGenerator(CodeGenerator):
    """Compiles `~` to check the length of what it joins before joining it."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As Jinja's own, but the parts pass through environment.concat_parts.
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.concat_parts((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write(")))")


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, also bounding `*`, `**`, `+` and `~` so one expression cannot eat the memory.

    A loop can still grow a string by other means (filters, string methods);
    the render worker's memory limit is what stops those.
    """

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator_: str, left: Any, right: Any
    ) -> Any:
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent larger than {MAX_EXPONENT}")
            return operator.pow(left, right)
        if operator_ == "+":
            if _is_sequence(left) and _is_sequence(right):
                _check_length(len(left) + len(right), "the joined sequence")
            return operator.add(left, right)
        for sequence, count in ((left, right), (right, left)):
            if _is_sequence(sequence) and isinstance(count, int):
                _check_length(len(sequence) * count, "the repeated sequence")
        return operator.mul(left, right)

    def concat_parts(self, parts: tuple[Any, ...]) -> list[str]:
        """The operands of a `~` expression as strings, refusing a too long result."""
        strings = [soft_str(part) for part in parts]
        _check_length(sum(map(len, strings)), "the joined string")
        return strings


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_length(length: int, what: str) -> None:
    if length > MAX_SEQUENCE_RESULT:
        raise SecurityError(f"{what} would be too long (over {MAX_SEQUENCE_RESULT})")


def money(value: Any, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """Format an amount in `currency`, rounded half up to the currency's minor unit."""
    amount = _decimal(value)
    if not isinstance(currency, str) or not is_currency(currency):
        raise _FilterError(f"money: {currency!r} is not an ISO 4217 currency code")
    try:
        precision = get_currency_precision(currency)
        quantum = Decimal(1).scaleb(-precision)
        rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
        return format_currency(rounded, currency, locale=locale, currency_digits=True)
    except (UnknownCurrencyError, UnknownLocaleError, ValueError, InvalidOperation) as exc:
        raise _FilterError(f"money: cannot format {value!r} in {currency!r}: {exc}") from None


def format_date_value(value: Any, fmt: str = "medium", locale: str = DEFAULT_LOCALE) -> str:
    """Format a date or datetime (or an ISO 8601 string of one).

    `fmt` is a strftime format when it contains ``%``; otherwise a CLDR pattern
    (``d MMM y``) or one of ``short``, ``medium``, ``long`` and ``full``.
    """
    moment = _moment(value)
    try:
        if "%" in fmt:
            return moment.strftime(fmt)
        if isinstance(moment, datetime):
            return format_datetime(moment, fmt, locale=locale)
        return format_date(moment, fmt, locale=locale)
    except (UnknownLocaleError, ValueError, KeyError) as exc:
        raise _FilterError(f"date: cannot format {value!r} as {fmt!r}: {exc}") from None


def address(value: Any) -> Markup:
    """Render a postal address as escaped lines joined by ``<br>``.

    Takes a mapping (name, company, line1/street, line2/street2, line3,
    postal_code, city, region/state, country), a list of lines or a string
    with one line per row.
    """
    if value is None:
        return Markup("")
    if isinstance(value, str):
        lines = value.splitlines()
    elif isinstance(value, Mapping):
        lines = _address_lines(value)
    elif isinstance(value, list | tuple):
        lines = [str(line) for line in value]
    else:
        raise _FilterError(
            f"address: expected a mapping, a list or a string, not {type(value).__name__}"
        )
    return Markup("<br>").join(escape(line.strip()) for line in lines if line and line.strip())


def _address_lines(value: Mapping[str, Any]) -> list[str]:
    def field(*names: str) -> str:
        for name in names:
            if value.get(name):
                return str(value[name])
        return ""

    lines = [field(*names) for names in _ADDRESS_FIELDS]
    lines.append(
        " ".join(part for part in (field("postal_code", "zip", "postcode"), field("city")) if part)
    )
    lines.append(field("region", "state"))
    lines.append(field("country"))
    return lines


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise _FilterError("money: expected a number, not a boolean")
    if isinstance(value, Decimal):
        return value
    try:
        # str() first: Decimal(0.1) would keep the float's binary expansion.
        amount = Decimal(str(value).strip() if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        raise _FilterError(f"money: {value!r} is not a number") from None
    if not amount.is_finite():
        raise _FilterError(f"money: {value!r} is not a finite number")
    return amount


def _moment(value: Any) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise _FilterError(
            f"date: expected a date or an ISO 8601 string, not {type(value).__name__}"
        )
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise _FilterError(f"date: {value!r} is not an ISO 8601 date") from None


def _safe_global(function: Callable[..., Markup]) -> Callable[..., Markup]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Markup:
        try:
            return function(*args, **kwargs)
        except BarcodeValueError as exc:
            raise _FilterError(str(exc)) from None

    return wrapper


def create_environment() -> jinja2.Environment:
    """Build the sandboxed, autoescaping environment templates are rendered in."""
    environment = _Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
        cache_size=0,
    )
    environment.filters["money"] = money
    environment.filters["date"] = format_date_value
    environment.filters["address"] = address
    environment.globals["barcode_code128"] = _safe_global(code128_svg)
    environment.globals["qr"] = _safe_global(qr_svg)
    return environment


@functools.cache
def _environment() -> jinja2.Environment:
    return create_environment()


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


def check_syntax(source: str) -> None:
    """Raise TemplateError when `source` does not compile, so uploads can refuse it."""
    try:
        _environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error on line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"cannot compile the template: {exc.message or exc}") from None


def render_template(source: str, data: Mapping[str, Any]) -> str:
    """Render template `source` with `data`; any failure becomes a TemplateError."""
    try:
        template = _compile(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error on line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"cannot compile the template: {exc.message or exc}") from None

    try:
        return template.render(dict(data))
    except SecurityError as exc:
        raise TemplateError(f"forbidden in a template: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"missing value: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template error: {exc.message or exc}") from None
    except _FilterError as exc:
        raise TemplateError(str(exc)) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
        raise TemplateError(f"error while rendering: {type(exc).__name__}: {exc}") from None
