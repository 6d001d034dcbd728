"""``wharf dlq``: list dead letters with their reasons, and replay them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wharf_common import deadletters
from wharf_common.bus import Bus
from wharf_common.errors import NotFound


def add_parser(commands: Any) -> None:
    """Register ``wharf dlq list QUEUE`` and ``wharf dlq replay QUEUE``."""
    dlq = commands.add_parser("dlq", help="list or replay a queue's dead letters")
    verbs = dlq.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="show dead letters and why they died")
    listing.add_argument("queue", help="the command queue, e.g. wharf.documents.render")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON")
    replay = verbs.add_parser("replay", help="send dead letters back to their queue")
    replay.add_argument("queue", help="the command queue, e.g. wharf.documents.render")
    replay.add_argument("--limit", type=int, help="replay at most this many")


async def run(args: argparse.Namespace, amqp_url: str) -> int:
    """Carry out a ``wharf dlq`` command against the broker at `amqp_url`."""
    bus = Bus(amqp_url, service="wharf-cli")
    await bus.connect()
    try:
        if args.verb == "replay":
            count = await deadletters.replay(bus, args.queue, limit=args.limit)
            print(f"replayed {count} dead letter(s) to {args.queue}")
            return 0
        letters = await deadletters.inspect(bus, args.queue, limit=args.limit)
    except NotFound as exc:
        print(f"wharf: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await bus.close()
    if args.json:
        print(json.dumps([letter.to_dict() for letter in letters], indent=2, default=str))
        return 0
    if not letters:
        print(f"{args.queue} has no dead letters")
    for letter in letters:
        print(f"{letter.dead_at or '-'}  {letter.type or '-'}  {letter.message_id}")
        print(f"    {letter.reason} (attempts: {letter.attempts})")
    return 0
