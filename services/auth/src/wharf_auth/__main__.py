"""Run the auth service, or one of its operator commands.

``python -m wharf_auth`` serves; ``python -m wharf_auth grant-ops EMAIL``
grants the ops role; ``python -m wharf_auth rotate-keys`` rotates the
signing key. Settings come from the ``WHARF_*`` environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from wharf_auth import admin
from wharf_auth.app import spec
from wharf_auth.settings import AuthSettings
from wharf_common import runtime
from wharf_common.errors import NotFound


def run(argv: list[str] | None = None) -> None:
    """Entry point of the auth service and its operator commands."""
    parser = argparse.ArgumentParser(prog="wharf_auth")
    commands = parser.add_subparsers(dest="command")
    grant = commands.add_parser("grant-ops", help="give a user the ops role")
    grant.add_argument("email")
    commands.add_parser("rotate-keys", help="start signing with a new key")
    args = parser.parse_args(argv)
    settings = AuthSettings()

    if args.command is None:
        runtime.main(spec(), settings)
    elif args.command == "grant-ops":
        try:
            asyncio.run(admin.grant_ops(settings.database_url, args.email))
        except NotFound as exc:
            sys.exit(f"grant-ops: {exc.detail}")
        print(f"granted ops to {args.email}")
    elif args.command == "rotate-keys":
        kid = asyncio.run(
            admin.rotate_keys(
                settings.database_url,
                settings.sealing_keys(),
                settings.access_token_ttl,
            )
        )
        print(f"signing with key {kid}")


if __name__ == "__main__":
    run()
