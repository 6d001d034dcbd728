from __future__ import annotations

from typing import Any

import aiohttp

from wharf_common import events


async def test_gateway_serves_the_generated_asyncapi_document(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/asyncapi.json") as response:
        assert response.status == 200
        document = await response.json()

    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(events.event_types())
