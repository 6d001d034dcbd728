"""Run the log sink: ``python -m wharf_log_sink``."""

from __future__ import annotations

from importlib.resources import files

from wharf_common.runtime import ServiceSpec, main
from wharf_log_sink import __version__
from wharf_log_sink.app import setup
from wharf_log_sink.db import SCHEMA
from wharf_log_sink.settings import LogSinkSettings


def spec() -> ServiceSpec:
    """The log sink as the runtime sees it; it never ships its own logs to the stream."""
    return ServiceSpec(
        name="log-sink",
        version=__version__,
        setup=setup,
        schema=SCHEMA,
        migrations=files("wharf_log_sink") / "migrations",
        ship_logs=False,
    )


if __name__ == "__main__":
    main(spec(), LogSinkSettings())
