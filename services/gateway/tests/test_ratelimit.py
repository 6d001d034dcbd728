"""The shared token bucket against a real Redis, with and without leases."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from wharf_common.testing import DEFAULT_REDIS_URL
from wharf_gateway import ratelimit
from wharf_gateway.ratelimit import RateLimiter


@pytest.fixture
async def client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ.get("WHARF_TEST_REDIS_URL", DEFAULT_REDIS_URL))
    yield client
    await client.aclose()


class Counting(RateLimiter):
    """A limiter that counts its trips to Redis."""

    trips = 0

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        super().__init__(client, prefix=prefix)
        script = self._script

        async def counted(**kwargs: object) -> object:
            self.trips += 1
            return await script(**kwargs)

        self._script = counted  # type: ignore[assignment]


async def test_a_quiet_bucket_asks_redis_every_time(client: redis.Redis, redis_prefix: str) -> None:
    limiter = Counting(client, prefix=redis_prefix)

    decisions = [await limiter.take("t", rate=0.01, burst=3) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after >= 1
    assert limiter.trips == 4
    # The refusal is remembered for a moment: hammering costs Redis nothing.
    assert not (await limiter.take("t", rate=0.01, burst=3)).allowed
    assert limiter.trips == 4


async def test_a_busy_bucket_leases_tokens_and_two_tasks_never_exceed_the_burst(
    client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each limiter is one gateway task; both see steady traffic on one tenant.
    monkeypatch.setattr(ratelimit, "_RATE_WINDOW", 0.02)
    first = Counting(client, prefix=redis_prefix)
    second = Counting(client, prefix=redis_prefix)
    burst = 400

    allowed = 0
    for n in range(300):
        for limiter in (first, second):
            allowed += (await limiter.take("t", rate=0.001, burst=burst)).allowed
        if n % 10 == 0:
            await asyncio.sleep(0.002)

    assert allowed <= burst
    assert allowed >= burst * 0.8  # what the leases left unspent is all that is lost
    assert first.trips + second.trips < 600 / 3  # far fewer round trips than requests


async def test_leases_expire_unspent(
    client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "LEASE_LIFETIME", 0.05)
    monkeypatch.setattr(ratelimit, "_RATE_WINDOW", 0.05)
    limiter = Counting(client, prefix=redis_prefix)
    for _ in range(40):
        await limiter.take("t", rate=1e6, burst=10**6)
        await asyncio.sleep(0.003)
    before = limiter.trips

    await asyncio.sleep(0.1)
    await limiter.take("t", rate=1e6, burst=10**6)

    assert limiter.trips == before + 1
