from __future__ import annotations

import asyncio
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
from wharf_common.storage import (
    LocalStore,
    ObjectStore,
    S3Store,
    SignedUpload,
    object_routes,
    open_store,
)

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
    """A LocalStore served by a real aiohttp server."""
    port = _free_port()
    local = LocalStore(tmp_path / "objects", SIGNING_KEY.encode(), f"http://127.0.0.1:{port}/")
    app = web.Application()
    app.add_routes(object_routes(local))
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
    upload = await served.signed_upload(
        "docs/a.pdf", size=len(blob), content_type="application/pdf", expires_in=60
    )
    get_url = await served.signed_url("docs/a.pdf")

    async with aiohttp.ClientSession() as http:
        async with http.put(upload.url, data=blob, headers=upload.headers) as response:
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
    as_upload = good.replace("method=GET", "method=PUT") + "&size=9&type=text%2Fplain"

    async with aiohttp.ClientSession() as http:
        async with http.get(good) as response:
            assert response.status == 200
        for url in (expired, tampered, other_key, later):
            async with http.get(url) as response:
                assert response.status == 403, url
                assert response.content_type == "application/problem+json"
        for url in (good, as_upload):
            headers = {"Content-Type": "text/plain"}
            async with http.put(url, data=b"overwrite", headers=headers) as response:
                assert response.status == 403

    assert await served.get("docs/b.txt") == b"secret"


async def _put(url: str, body: object, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.put(url, data=body, headers=headers) as r:
        assert r.content_type == "application/problem+json" or r.status == 200
        return r.status, await r.json() if r.status != 200 else {}


def _leftovers(store: LocalStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()]


async def test_local_upload_takes_exactly_its_signed_size(served: LocalStore) -> None:
    upload = await served.signed_upload("t/ten.json", size=10, content_type="application/json")

    longer = await _put(upload.url, b"x" * 16, upload.headers)
    shorter = await _put(upload.url, b"x" * 4, upload.headers)

    assert longer[0] == 413 and "takes 10 bytes, not 16" in str(longer[1]["detail"])
    assert shorter[0] == 400 and "takes 10 bytes, not 4" in str(shorter[1]["detail"])
    assert not await served.exists("t/ten.json")
    assert not _leftovers(served)


async def test_local_chunked_upload_stops_at_its_signed_size(served: LocalStore) -> None:
    upload = await served.signed_upload("big/upload.bin", size=MIB, content_type="a/b")

    async def body(chunks: int) -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield os.urandom(MIB // 2)

    too_long = await _put(upload.url, body(40), upload.headers)
    too_short = await _put(upload.url, body(1), upload.headers)
    exact = await _put(upload.url, body(2), upload.headers)

    assert (too_long[0], too_short[0], exact[0]) == (413, 400, 200)
    assert len(await served.get("big/upload.bin")) == MIB
    assert [p.name for p in _leftovers(served)] == ["upload.bin", "upload.bin"]


async def test_local_upload_takes_only_its_signed_content_type(served: LocalStore) -> None:
    upload = await served.signed_upload("t/data", size=2, content_type="application/json")

    html = await _put(upload.url, b"{}", upload.headers | {"Content-Type": "text/html"})
    with_charset = upload.headers | {"Content-Type": "application/json; charset=utf-8"}
    charset = await _put(upload.url, b"{}", with_charset)
    retyped_url = upload.url.replace("type=application%2Fjson", "type=text%2Fhtml")
    retyped = await _put(retyped_url, b"{}", upload.headers | {"Content-Type": "text/html"})

    assert html[0] == 415 and "application/json, not text/html" in str(html[1]["detail"])
    assert (charset[0], retyped[0]) == (415, 403)
    assert not await served.exists("t/data")


async def test_local_upload_url_stores_one_object(served: LocalStore) -> None:
    upload = await served.signed_upload("t/once.txt", size=5, content_type="text/plain")

    first = await _put(upload.url, b"first", upload.headers)
    second = await _put(upload.url, b"again", upload.headers)

    assert (first[0], second[0]) == (200, 409)
    assert "has been used" in str(second[1]["detail"])
    assert await served.get("t/once.txt") == b"first"
    assert await served.content_type("t/once.txt") == "text/plain"


async def test_local_concurrent_puts_to_one_url_store_one_body(served: LocalStore) -> None:
    upload = await served.signed_upload("t/race.bin", size=MIB, content_type="a/b")
    bodies = [bytes([n]) * MIB for n in range(4)]

    answers = await asyncio.gather(*(_put(upload.url, body, upload.headers) for body in bodies))

    assert sorted(status for status, _ in answers) == [200, 409, 409, 409]
    winner = next(n for n, (status, _) in enumerate(answers) if status == 200)
    assert await served.get("t/race.bin") == bodies[winner]
    assert not [p for p in _leftovers(served) if p.name.endswith(".tmp")]


async def test_local_cut_off_upload_leaves_no_object(served: LocalStore) -> None:
    upload = await served.signed_upload("t/cut.bin", size=MIB, content_type="a/b")
    url = urlsplit(upload.url)
    head = (
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: a/b\r\nContent-Length: {MIB}\r\n\r\n"
    )

    _, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(head.encode() + b"x" * (MIB // 2))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    absent = not await served.exists("t/cut.bin")
    async with asyncio.timeout(10):
        while _leftovers(served):
            await asyncio.sleep(0.05)
    retried = await _put(upload.url, b"y" * MIB, upload.headers)

    assert absent
    assert retried[0] == 200
    assert await served.get("t/cut.bin") == b"y" * MIB


def test_verify_signed_rejects_wrong_method_and_expiry(tmp_path: Path) -> None:
    local = LocalStore(tmp_path, b"key", "http://x")
    expires = int(time.time()) + 60
    signature = local._sign("GET", "k", expires)

    local.verify_signed("k", "GET", expires, signature)
    with pytest.raises(errors.Forbidden):
        local.verify_signed("k", "PUT", expires, signature)
    with pytest.raises(errors.Forbidden):
        local.verify_signed("k", "GET", expires + 1, signature)
    with pytest.raises(errors.Forbidden):
        local.verify_signed("k", "GET", expires, signature, 10, "a/b")
    stale = int(time.time()) - 1
    with pytest.raises(errors.Forbidden, match="expired"):
        local.verify_signed("k", "GET", stale, local._sign("GET", "k", stale))


async def test_s3_signed_put_then_get_over_http(s3_store: ObjectStore) -> None:
    assert isinstance(s3_store, S3Store)
    blob = os.urandom(MIB)
    upload = await s3_store.signed_upload(
        "docs/c.bin", size=len(blob), content_type="application/pdf", expires_in=60
    )
    get_url = await s3_store.signed_url("docs/c.bin", expires_in=60)

    async with aiohttp.ClientSession() as http:
        async with http.put(upload.url, data=blob, headers=upload.headers) as response:
            assert response.status == 200, await response.text()
        async with http.get(get_url) as response:
            assert response.status == 200
            assert response.content_type == "application/pdf"
            assert await response.read() == blob

    assert "X-Amz-Expires=60" in get_url
    assert await s3_store.get("docs/c.bin") == blob


async def test_s3_upload_url_signs_size_and_type_and_stores_one_object(
    s3_store: ObjectStore,
) -> None:
    assert isinstance(s3_store, S3Store)
    upload = await s3_store.signed_upload("t/once.txt", size=5, content_type="text/plain")
    signed = parse_qs(urlsplit(upload.url).query)["X-Amz-SignedHeaders"][0].split(";")

    async with aiohttp.ClientSession() as http:
        async with http.put(upload.url, data=b"first", headers=upload.headers) as response:
            first = response.status
        async with http.put(upload.url, data=b"again", headers=upload.headers) as response:
            second = response.status

    assert {"content-length", "content-type", "if-none-match"} <= set(signed)
    assert (first, second) == (200, 412)
    assert await s3_store.get("t/once.txt") == b"first"


@pytest.mark.parametrize(
    ("size", "content_type"), [(-1, "a/b"), (1, ""), (1, " a/b"), (1, "a/b\r\nX: y")]
)
async def test_signed_upload_refuses_a_bad_size_or_type(
    store: ObjectStore, size: int, content_type: str
) -> None:
    with pytest.raises(ValueError):
        await store.signed_upload("a/b", size=size, content_type=content_type)


async def test_both_stores_ask_for_the_same_upload_headers(store: ObjectStore) -> None:
    upload = await store.signed_upload("a/b", size=3, content_type="text/csv")

    assert isinstance(upload, SignedUpload)
    assert upload.headers == {"Content-Type": "text/csv", "If-None-Match": "*"}
