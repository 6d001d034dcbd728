from __future__ import annotations

import asyncio
import os
from pathlib import Path

from wharf_common import db
from wharf_common.consumer import Delivery
from wharf_common.runtime import Runtime, ServiceSpec, main
from wharf_common.settings import ServiceSettings

QUEUE = "wharf.sample.work"


async def setup(rt: Runtime) -> None:
    async def handle(delivery: Delivery) -> None:
        await asyncio.sleep(float(delivery.body.get("sleep", 0)))
        async with rt.db.acquire() as conn, conn.transaction():
            if await db.claim_message(conn, "sample", delivery.envelope.id):
                await conn.execute(
                    "INSERT INTO sample.effects (n, pid) VALUES ($1, $2)",
                    delivery.body["n"],
                    os.getpid(),
                )

    rt.consume(QUEUE, handle)


if __name__ == "__main__":
    spec = ServiceSpec(
        name="sample",
        version="0",
        setup=setup,
        schema="sample",
        migrations=Path(__file__).parent / "migrations",
    )
    main(spec, ServiceSettings(service_name="sample"))
