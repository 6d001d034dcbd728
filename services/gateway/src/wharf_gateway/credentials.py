"""Who is calling: access tokens verified locally, API keys verified through auth.

Access tokens are checked against a cached copy of auth's JWKS, so a request
costs no call to auth. An unknown ``kid`` (a key rotated in since the last
fetch) triggers one refetch, at most every `min_refetch` seconds. A token
that verified is remembered, by its hash, until it expires or the JWKS is
fetched again, so a client reusing its token pays for the signature once.
API keys are verified by auth and the answer, good or bad, is cached briefly.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from wharf_common.errors import ClientError, Unauthorized

logger = logging.getLogger(__name__)

ALGORITHMS = ["EdDSA"]
_CACHE_LIMIT = 10_000
_TOKEN_CACHE_LIMIT = 4096

Fetch = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Principal:
    """A verified caller: its tenant, and its roles (users) or scopes (API keys)."""

    tenant: str
    subject: str
    kind: str
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    def caller(self) -> dict[str, Any]:
        """The caller as it travels to other services in a request body."""
        return {
            "tenant": self.tenant,
            "subject": self.subject,
            "roles": list(self.roles),
            "scopes": list(self.scopes),
        }


@dataclass
class _Keys:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    fetched_at: float = 0.0


class TokenVerifier:
    """Verifies access tokens against auth's JWKS, cached and refreshed on unknown kids."""

    def __init__(
        self,
        fetch_jwks: Callable[[], Awaitable[Any]],
        *,
        issuer: str,
        leeway: float,
        min_refetch: float,
    ) -> None:
        self._fetch = fetch_jwks
        self.issuer = issuer
        self.leeway = leeway
        self.min_refetch = min_refetch
        self._keys = _Keys()
        self._lock = asyncio.Lock()
        # Token hash -> (wall-clock time it stops being valid, its principal).
        self._verified: collections.OrderedDict[bytes, tuple[float, Principal]] = (
            collections.OrderedDict()
        )

    @property
    def document(self) -> dict[str, Any]:
        """The JWKS document as last fetched."""
        return self._keys.document

    async def refresh(self, *, force: bool = False) -> None:
        """Fetch the JWKS unless another caller did meanwhile.

        Fetches are at least `min_refetch` apart: a caller that comes sooner
        waits for its turn rather than failing, since a key signed into use
        just after the last fetch is exactly what it is looking for.
        """
        seen = self._keys.fetched_at
        async with self._lock:
            if self._keys.fetched_at != seen:
                return
            wait = self.min_refetch - (time.monotonic() - seen)
            if not force and wait > 0:
                await asyncio.sleep(wait)
            document = await self._fetch()
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in document.get("keys", []):
                try:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk)
                except (KeyError, jwt.PyJWKError):
                    logger.warning("ignored an unusable key in the JWKS")
            self._keys = _Keys(keys, document, time.monotonic())
            # A key may have been withdrawn: every token is checked again.
            self._verified.clear()
            logger.debug("fetched the JWKS", extra={"kids": ",".join(keys)})

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid access token; Unauthorized otherwise."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            if time.time() < cached[0]:
                self._verified.move_to_end(digest)
                return cached[1]
            del self._verified[digest]
        # Nothing awaits between the signature check and this insert, so the
        # entry always comes from the keys in use: a refresh clears it later.
        principal, expires = await self._verify(token)
        self._verified[digest] = (expires, principal)
        if len(self._verified) > _TOKEN_CACHE_LIMIT:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in ALGORITHMS:
            raise Unauthorized("invalid access token")
        key = self._keys.keys.get(kid)
        if key is None:
            await self.refresh()
            key = self._keys.keys.get(kid)
        if key is None:
            raise Unauthorized("invalid access token")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token") from exc
        tenant, roles = claims.get("tenant"), claims.get("roles", [])
        if not isinstance(tenant, str) or not isinstance(roles, list):
            raise Unauthorized("invalid access token")
        principal = Principal(tenant, str(claims["sub"]), "user", roles=tuple(map(str, roles)))
        # PyJWT accepts the token while now < exp + leeway; so does the cache.
        return principal, float(claims["exp"]) + self.leeway


class ApiKeyVerifier:
    """Verifies API keys through auth, remembering each answer for a short while."""

    def __init__(self, verify: Callable[[str], Awaitable[Any]], *, ttl: float) -> None:
        self._verify = verify
        self.ttl = ttl
        self._cache: dict[bytes, tuple[float, Principal | ClientError]] = {}

    async def verify(self, key: str) -> Principal:
        """Return the principal of a valid API key; Unauthorized otherwise."""
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            outcome = cached[1]
        else:
            outcome = await self._ask(key)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[digest] = (now + self.ttl, outcome)
        if isinstance(outcome, ClientError):
            raise Unauthorized("invalid API key")
        return outcome

    async def _ask(self, key: str) -> Principal | ClientError:
        try:
            answer = await self._verify(key)
        except Unauthorized as exc:
            return exc
        return Principal(
            str(answer["tenant"]),
            f"api-key:{answer['id']}",
            "api_key",
            scopes=tuple(answer.get("scopes", [])),
        )
