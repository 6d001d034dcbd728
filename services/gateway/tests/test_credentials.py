from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from wharf_common.errors import Unauthorized
from wharf_gateway import credentials
from wharf_gateway.credentials import TokenVerifier

ISSUER = "https://wharf.test"
KID = "k1"


class Keys:
    """One signing key and the JWKS the verifier fetches."""

    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(self.private.public_key()))
        self.document: dict[str, Any] = {"keys": [{**jwk, "kid": KID, "alg": "EdDSA"}]}
        self.fetches = 0

    async def fetch(self) -> Any:
        self.fetches += 1
        return self.document

    def sign(self, subject: str = "u1", *, lifetime: int = 600) -> str:
        now = int(time.time())
        claims = {
            "sub": subject,
            "iss": ISSUER,
            "iat": now,
            "exp": now + lifetime,
            "tenant": "t1",
            "roles": ["member"],
        }
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers={"kid": KID})


def verifier(keys: Keys) -> TokenVerifier:
    return TokenVerifier(keys.fetch, issuer=ISSUER, leeway=0.0, min_refetch=0.0)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(credentials.jwt, "decode", counting)
    return calls


async def test_verified_token_skips_the_signature_check_next_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys()
    tokens = verifier(keys)
    calls = count_decodes(monkeypatch)
    token = keys.sign()

    first = await tokens.verify(token)
    second = await tokens.verify(token)

    assert first == second
    assert first.tenant == "t1" and first.roles == ("member",)
    assert len(calls) == 1


async def test_invalid_token_is_checked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Keys()
    tokens = verifier(keys)
    await tokens.refresh(force=True)
    calls = count_decodes(monkeypatch)
    header, payload, signature = keys.sign().split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"

    for _ in range(2):
        with pytest.raises(Unauthorized):
            await tokens.verify(tampered)

    assert len(calls) == 2


async def test_cached_token_is_refused_once_it_expires() -> None:
    keys = Keys()
    tokens = verifier(keys)
    token = keys.sign(lifetime=1)

    await tokens.verify(token)
    await asyncio.sleep(
        max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.1
    )

    with pytest.raises(Unauthorized):
        await tokens.verify(token)


async def test_refetching_the_jwks_forgets_verified_tokens() -> None:
    keys = Keys()
    tokens = verifier(keys)
    token = keys.sign()
    await tokens.verify(token)

    keys.document = {"keys": []}
    await tokens.refresh(force=True)

    with pytest.raises(Unauthorized):
        await tokens.verify(token)


async def test_verified_token_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "_TOKEN_CACHE_LIMIT", 2)
    keys = Keys()
    tokens = verifier(keys)
    await tokens.refresh(force=True)
    calls = count_decodes(monkeypatch)
    first, second, third = (keys.sign(f"u{n}") for n in range(3))

    for token in (first, second, first, third, first, second):
        await tokens.verify(token)

    # `first` stays as the most recently used; `second` was evicted by `third`.
    assert calls == [first, second, third, second]
