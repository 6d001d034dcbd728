from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from wharf_documents.errors import FetchFailed, FetchRefused, RenderError, TooLarge
from wharf_documents.fetcher import (
    ASSET_BASE_URL,
    FetchPolicy,
    SafeURLFetcher,
    is_public_address,
)
from wharf_documents.render import Renderer, RenderRequest
from wharf_documents.settings import DocumentsSettings

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>'


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("2002:7f00:1::", False),
        ("not-an-address", False),
    ],
)
def test_only_public_unicast_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_assets_and_data_uris_are_served() -> None:
    fetcher = SafeURLFetcher({"img/logo.svg": SVG, "/style.css": b"p {}"})

    asset = fetcher.fetch(f"{ASSET_BASE_URL}img/logo.svg")
    css = fetcher.fetch(f"{ASSET_BASE_URL}style.css")
    data = fetcher.fetch("data:text/plain;base64,aGVsbG8=")

    assert asset.read() == SVG
    assert asset.content_type == "image/svg+xml"
    assert css.content_type == "text/css"
    assert data.read() == b"hello"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1/",
        "https://example.com/logo.png",
    ],
)
def test_files_and_hosts_not_on_the_allow_list_are_refused(url: str) -> None:
    with pytest.raises(FetchRefused):
        SafeURLFetcher({}).fetch(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1/",
        "http://localhost/",
        "http://[::1]/",
        "http://2130706433/",
    ],
)
def test_allowed_hosts_resolving_to_internal_addresses_are_refused(url: str) -> None:
    hosts = frozenset({"169.254.169.254", "127.0.0.1", "localhost", "::1", "2130706433"})
    fetcher = SafeURLFetcher({}, FetchPolicy(allowed_hosts=hosts))

    with pytest.raises(FetchRefused, match="not a public address"):
        fetcher.fetch(url)


def test_asset_paths_cannot_leave_the_template() -> None:
    fetcher = SafeURLFetcher({"a.css": b""})

    with pytest.raises(FetchFailed, match="no asset"):
        fetcher.fetch(f"{ASSET_BASE_URL}../../etc/passwd")
    with pytest.raises(FetchFailed, match="no asset"):
        fetcher.fetch(f"{ASSET_BASE_URL}missing.png")


def test_size_caps_apply_per_resource_and_in_total() -> None:
    policy = FetchPolicy(max_resource_bytes=100, max_total_bytes=150)
    fetcher = SafeURLFetcher({"a": b"x" * 80, "b": b"x" * 80, "big": b"x" * 101}, policy)

    with pytest.raises(TooLarge):
        fetcher.fetch(f"{ASSET_BASE_URL}big")
    fetcher.fetch(f"{ASSET_BASE_URL}a")
    with pytest.raises(TooLarge):
        fetcher.fetch(f"{ASSET_BASE_URL}b")
    with pytest.raises(TooLarge):
        fetcher.fetch("data:," + "x" * 200)


_LOCATIONS = {
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "localhost": "http://localhost:{port}/image.svg",
    "file": "file:///etc/passwd",
    "same": "/image.svg",
}


@pytest.fixture(scope="module")
async def redirect_server() -> AsyncIterator[int]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=SVG, content_type="image/svg+xml")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        location = _LOCATIONS[request.match_info["name"]]
        raise web.HTTPFound(location.format(port=request.url.port))

    app = web.Application()
    app.router.add_get("/image.svg", image)
    app.router.add_get("/big", big)
    app.router.add_get("/to/{name}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _path(name: str) -> str:
    return f"/to/{name}"


def _test_fetcher(port: int, **limits: int) -> SafeURLFetcher:
    policy = FetchPolicy(
        allowed_hosts=frozenset({"127.0.0.1", "localhost", "169.254.169.254"}),
        internal_allow_list=frozenset({f"127.0.0.1:{port}"}),
        **limits,
    )
    return SafeURLFetcher({}, policy)


async def test_allow_listed_test_host_is_fetched_and_relative_redirects_followed(
    redirect_server: int,
) -> None:
    fetcher = _test_fetcher(redirect_server)
    base = f"http://127.0.0.1:{redirect_server}"

    direct = await asyncio.to_thread(fetcher.fetch, f"{base}/image.svg")
    redirected = await asyncio.to_thread(fetcher.fetch, f"{base}{_path('same')}")

    assert direct.read() == SVG
    assert redirected.read() == SVG
    assert redirected.url == f"{base}/image.svg"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("metadata", "169.254.169.254 resolves to 169.254.169.254"),
        ("localhost", "localhost resolves to"),
        ("file", "file URLs are not allowed"),
    ],
)
async def test_redirect_to_an_internal_address_is_refused(
    redirect_server: int, name: str, message: str
) -> None:
    fetcher = _test_fetcher(redirect_server)
    url = f"http://127.0.0.1:{redirect_server}{_path(name)}"

    with pytest.raises(FetchRefused, match=message):
        await asyncio.to_thread(fetcher.fetch, url)


async def test_http_resource_over_the_cap_is_refused(redirect_server: int) -> None:
    fetcher = _test_fetcher(redirect_server, max_resource_bytes=1000)

    with pytest.raises(TooLarge):
        await asyncio.to_thread(fetcher.fetch, f"http://127.0.0.1:{redirect_server}/big")


async def test_render_fails_with_fetch_refused_on_a_redirect_to_metadata(
    redirect_server: int,
) -> None:
    settings = DocumentsSettings(
        render_workers=1,
        render_timeout=20,
        fetch_internal_allow_list=[f"127.0.0.1:{redirect_server}"],
    )
    base = f"http://127.0.0.1:{redirect_server}"
    hosts = frozenset({"127.0.0.1", "169.254.169.254"})

    async with Renderer(settings) as renderer:
        ok = await renderer.render(
            RenderRequest(f'<img src="{base}/image.svg">', allowed_hosts=hosts)
        )
        with pytest.raises(RenderError) as refused:
            await renderer.render(
                RenderRequest(f'<img src="{base}{_path("metadata")}">', allowed_hosts=hosts)
            )

    assert ok.pages == 1
    assert refused.value.reason == "fetch_refused"
    assert "169.254.169.254" in refused.value.message
