from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from wharf_common import errors
from wharf_common.storage import LocalStore, ObjectStore, S3Store, object_routes, open_store

SIGNING_KEY = "test-signing-key"
MIB = 1024 * 1024


@pytest_asyncio.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        url = f"file://{tmp_path}/objects"
    else:
        url = request.getfixturevalue("s3_url")
    opened = await open_store(url, signing_key=SIGNING_KEY, public_url="http://127.0.0.1:1")
    yield opened
    await opened.close()


@pytest_asyncio.fixture
async def s3_store(s3_url: str) -> AsyncIterator[ObjectStore]:
    opened = await open_store(s3_url, signing_key=SIGNING_KEY, public_url="http://unused")
    yield opened
    await opened.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[LocalStore]:
    """A LocalStore served by a real aiohttp server; uploads capped at 2 MiB."""
    port = _free_port()
    local = LocalStore(tmp_path / "objects", SIGNING_KEY.encode(), f"http://127.0.0.1:{port}/")
    app = web.Application()
    app.add_routes(object_routes(local, max_upload_size=2 * MIB))
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    yield local
    await server.close()


async def test_round_trip_text_and_binary(store: ObjectStore) -> None:
    blob = os.urandom(MIB)

    await store.put("tenant-a/notes/hello.txt", b"hello", "text/plain")
    await store.put("tenant-a/blobs/one.bin", blob)

    assert await store.get("tenant-a/notes/hello.txt") == b"hello"
    assert await store.get("tenant-a/blobs/one.bin") == blob
    assert await store.exists("tenant-a/blobs/one.bin")


async def test_put_replaces_and_delete_removes(store: ObjectStore) -> None:
    await store.put("k/doc", b"first")
    await store.put("k/doc", b"second")
    assert await store.get("k/doc") == b"second"

    await store.delete("k/doc")
    await store.delete("k/doc")

    assert not await store.exists("k/doc")


async def test_missing_key_raises_not_found(store: ObjectStore) -> None:
    with pytest.raises(errors.NotFound):
        await store.get("nowhere/missing.bin")
    assert not await store.exists("nowhere/missing.bin")


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "a/", "./a", "a\\b", ".meta/a", "a\x00b"],
)
async def test_unsafe_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(errors.BadRequest):
        await store.put(key, b"x")
    with pytest.raises(errors.BadRequest):
        await store.get(key)
    with pytest.raises(errors.BadRequest):
        await store.signed_url(key)


async def test_local_objects_live_under_root_without_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    local = LocalStore(root, b"key", "http://example")

    await local.put("a/b/c.txt", b"data", "text/plain")
    await local.put("a/b/c.txt", b"data2", "text/plain")

    assert (root / "a" / "b" / "c.txt").read_bytes() == b"data2"
    names = [p.name for p in root.rglob("*") if p.is_file()]
    assert not [n for n in names if n.endswith(".tmp")]
    assert await local.content_type("a/b/c.txt") == "text/plain"


async def test_local_small_and_large_objects_read_back_whole(tmp_path: Path) -> None:
    local = LocalStore(tmp_path, b"key", "http://example")
    small, large = b"s" * 100, bytes(range(256)) * 1024

    await local.put("t/small.bin", small)
    await local.put("t/large.bin", large)

    assert await local.get("t/small.bin") == small
    assert await local.get("t/large.bin") == large
    with pytest.raises(errors.NotFound):
        await local.get("t")


async def test_local_key_that_is_also_a_prefix_is_a_conflict(tmp_path: Path) -> None:
    local = LocalStore(tmp_path, b"key", "http://example")
    await local.put("a", b"file")

    with pytest.raises(errors.Conflict):
        await local.put("a/b", b"nested")

    await local.put("c/d", b"nested")
    with pytest.raises(errors.Conflict):
        await local.put("c", b"file")
    with pytest.raises(errors.NotFound):
        await local.get("c")
    assert await local.get("c/d") == b"nested"


async def test_open_store_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    relative = await open_store("file://rel/objects", signing_key="k", public_url="http://x")
    absolute = await open_store(f"file://{tmp_path}/abs", signing_key="k", public_url="http://x")

    assert isinstance(relative, LocalStore)
    assert relative.root == tmp_path / "rel" / "objects"
    assert isinstance(absolute, LocalStore)
    assert (tmp_path / "abs").is_dir()


async def test_open_store_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        await open_store("ftp://host/x", signing_key="k", public_url="http://x")


async def test_local_signed_put_then_get_over_http(served: LocalStore) -> None:
    blob = os.urandom(MIB)
    put_url = await served.signed_url("docs/a.pdf", method="PUT", expires_in=60)
    get_url = await served.signed_url("docs/a.pdf")

    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/pdf"}
        async with http.put(put_url, data=blob, headers=headers) as response:
            assert response.status == 200
        async with http.get(get_url) as response:
            assert response.status == 200
            assert response.content_type == "application/pdf"
            assert await response.read() == blob

    assert await served.get("docs/a.pdf") == blob


async def test_local_signed_url_shape(served: LocalStore) -> None:
    url = await served.signed_url("x/y z.bin", expires_in=120)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == "/v1/objects/x/y%20z.bin"
    assert query["method"] == ["GET"]
    assert abs(int(query["expires"][0]) - (time.time() + 120)) < 5
    served.verify_signed("x/y z.bin", "GET", int(query["expires"][0]), query["signature"][0])


async def test_local_tampered_or_expired_signature_is_forbidden(served: LocalStore) -> None:
    await served.put("docs/b.txt", b"secret", "text/plain")
    good = await served.signed_url("docs/b.txt")
    expired = await served.signed_url("docs/b.txt", expires_in=-10)
    tampered = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    other_key = good.replace("docs/b.txt", "docs/c.txt")
    later = good.replace("expires=", "expires=9")

    async with aiohttp.ClientSession() as http:
        async with http.get(good) as response:
            assert response.status == 200
        for url in (expired, tampered, other_key, later):
            async with http.get(url) as response:
                assert response.status == 403, url
                assert response.content_type == "application/problem+json"
        async with http.put(good, data=b"overwrite") as response:
            assert response.status == 403

    assert await served.get("docs/b.txt") == b"secret"


async def test_local_signed_upload_above_cap_is_rejected(served: LocalStore) -> None:
    url = await served.signed_url("big/upload.bin", method="PUT")

    async def body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MIB)

    async with aiohttp.ClientSession() as http, http.put(url, data=body()) as response:
        assert response.status == 413

    assert not await served.exists("big/upload.bin")
    assert not [p for p in served.root.rglob("*") if p.is_file()]


def test_verify_signed_rejects_wrong_method_and_expiry(tmp_path: Path) -> None:
    local = LocalStore(tmp_path, b"key", "http://x")
    expires = int(time.time()) + 60
    signature = local._sign("k", "GET", expires)

    local.verify_signed("k", "GET", expires, signature)
    with pytest.raises(errors.Forbidden):
        local.verify_signed("k", "PUT", expires, signature)
    with pytest.raises(errors.Forbidden):
        local.verify_signed("k", "GET", expires + 1, signature)
    stale = int(time.time()) - 1
    with pytest.raises(errors.Forbidden, match="expired"):
        local.verify_signed("k", "GET", stale, local._sign("k", "GET", stale))


async def test_s3_signed_put_then_get_over_http(s3_store: ObjectStore) -> None:
    assert isinstance(s3_store, S3Store)
    blob = os.urandom(MIB)
    put_url = await s3_store.signed_url("docs/c.bin", method="PUT", expires_in=60)
    get_url = await s3_store.signed_url("docs/c.bin", expires_in=60)

    async with aiohttp.ClientSession() as http:
        async with http.put(put_url, data=blob) as response:
            assert response.status == 200, await response.text()
        async with http.get(get_url) as response:
            assert response.status == 200
            assert await response.read() == blob

    assert "X-Amz-Expires=60" in get_url
    assert await s3_store.get("docs/c.bin") == blob


async def test_signed_url_refuses_other_methods(store: ObjectStore) -> None:
    with pytest.raises(ValueError):
        await store.signed_url("a/b", method="DELETE")
