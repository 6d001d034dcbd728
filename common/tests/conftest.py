from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

MANAGEMENT_URL = os.environ.get("WHARF_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
AMQP_HOST = os.environ.get("WHARF_TEST_AMQP_HOST", "guest:guest@127.0.0.1:5672")


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    """A RabbitMQ virtual host of the test's own, deleted afterwards."""
    vhost = f"wharf-test-{uuid.uuid4().hex[:12]}"
    api = f"{MANAGEMENT_URL.rstrip('/')}/api"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{api}/vhosts/{quote(vhost, safe='')}") as response:
            response.raise_for_status()
        async with http.put(
            f"{api}/permissions/{quote(vhost, safe='')}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ) as response:
            response.raise_for_status()
        try:
            yield f"amqp://{AMQP_HOST}/{quote(vhost, safe='')}"
        finally:
            async with http.delete(f"{api}/vhosts/{quote(vhost, safe='')}"):
                pass
