"""Token-bucket rate limits shared by every gateway task, held in Redis.

One Lua script refills and takes from a bucket atomically, with Redis's own
clock, so several gateway tasks (on several machines) share one limit per
tenant without races or clock skew. When Redis cannot be reached the limit
is not enforced and a warning is logged: losing the limiter must not take
the whole API down.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket. ARGV: rate per second, burst, cost.
# Returns {allowed (0/1), milliseconds until `cost` tokens are available}.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
"""


@dataclass(frozen=True)
class Decision:
    """Whether a request may go ahead, and if not, how long to wait."""

    allowed: bool
    retry_after: float


class RateLimiter:
    """Takes tokens from named buckets in Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_TOKEN_BUCKET)

    async def take(self, bucket: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        """Take `cost` tokens from `bucket`; fails open when Redis is away."""
        try:
            allowed, wait = await self._script(
                keys=[f"{self.prefix}:{bucket}"], args=[rate, burst, cost]
            )
        except (RedisError, OSError) as exc:
            logger.warning("rate limit not enforced: Redis is unavailable (%s)", type(exc).__name__)
            return Decision(True, 0.0)
        return Decision(
            bool(allowed), max(1.0, math.ceil(int(wait) / 1000)) if not allowed else 0.0
        )
