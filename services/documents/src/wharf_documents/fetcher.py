"""The URL fetcher WeasyPrint uses: the template's own assets, data: URIs, and nothing else.

Templates are untrusted, so a render may read only what it was given. Named
external hosts can be allowed per render; they are fetched only when every
address they resolve to is public, on the first request and after every
redirect, and the connection goes to the address that was checked.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import mimetypes
import posixpath
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit

from weasyprint.urls import URLFetcher, URLFetcherResponse

from wharf_documents.errors import FetchFailed, FetchRefused, RenderError, TooLarge

ASSET_HOST = "assets.wharf.invalid"
ASSET_BASE_URL = f"https://{ASSET_HOST}/"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What one render may fetch beyond its own assets, and how much."""

    allowed_hosts: frozenset[str] = frozenset()
    internal_allow_list: frozenset[str] = frozenset()
    max_resource_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 50 * 1024 * 1024
    max_redirects: int = 5
    timeout: float = 10.0
    user_agent: str = "wharf-documents"


def normalise_asset_path(path: str) -> str | None:
    """Return the canonical relative form of an asset path, or None if it leaves the root."""
    path = path.replace("\\", "/").lstrip("/")
    if not path:
        return None
    normal = posixpath.normpath(path)
    if normal == "." or normal.startswith("../") or normal == "..":
        return None
    return normal


def is_public_address(address: str) -> bool:
    """True when `address` is a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve {host}: {exc}") from None
    return [str(info[4][0]) for info in infos]


class SafeURLFetcher(URLFetcher):  # type: ignore[misc]
    """Serve a render's assets and data: URIs; refuse files and, unless allowed, the network."""

    def __init__(
        self,
        assets: Mapping[str, bytes],
        policy: FetchPolicy | None = None,
        *,
        resolver: Resolver = _resolve,
    ) -> None:
        # Every failure stops the render: a document silently missing a part is worse.
        super().__init__(allowed_protocols=(), allow_redirects=False, fail_on_errors=True)
        self._policy = policy or FetchPolicy()
        self._resolver = resolver
        self._assets: dict[str, bytes] = {}
        for name, content in assets.items():
            normal = normalise_asset_path(name)
            if normal is not None:
                self._assets[normal] = content
        self._fetched = 0
        self.failure: RenderError | None = None

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        """Return the resource at `url`, or raise a RenderError saying why it is refused.

        The first failure is also kept in `failure`: WeasyPrint swallows some
        (inside SVG images), and the render must still fail.
        """
        try:
            return self._fetch(url)
        except RenderError as exc:
            if self.failure is None:
                self.failure = exc
            raise

    def _fetch(self, url: str) -> URLFetcherResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "https" and parts.netloc.lower() == ASSET_HOST:
            return self._asset(url, parts.path)
        if scheme == "data":
            return self._data(url)
        if scheme in ("http", "https"):
            return self._http(url)
        raise FetchRefused(f"{_short(url)}: {scheme or 'relative'} URLs are not allowed")

    def _asset(self, url: str, path: str) -> URLFetcherResponse:
        name = normalise_asset_path(unquote(path))
        content = self._assets.get(name) if name is not None else None
        if content is None:
            raise FetchFailed(f"the template has no asset {unquote(path).lstrip('/')!r}")
        self._count(len(content), url)
        mime_type = mimetypes.guess_type(name or "")[0] or "application/octet-stream"
        return URLFetcherResponse(url, content, {"Content-Type": mime_type})

    def _data(self, url: str) -> URLFetcherResponse:
        header, comma, payload = url[5:].partition(",")
        if not comma:
            raise FetchFailed("malformed data: URI")
        # Base64 and percent-encoding only ever shrink the payload.
        self._check_size(len(payload), "a data: URI")
        raw = unquote_to_bytes(payload)
        mime_type = header
        if header.lower().endswith(";base64"):
            mime_type = header[: -len(";base64")]
            try:
                raw = base64.b64decode(raw)
            except binascii.Error:
                raise FetchFailed("malformed base64 in a data: URI") from None
        self._count(len(raw), "a data: URI")
        return URLFetcherResponse(url, raw, {"Content-Type": mime_type or "text/plain"})

    def _http(self, url: str) -> URLFetcherResponse:
        for _ in range(self._policy.max_redirects + 1):
            response, connection = self._send(url)
            try:
                if response.status in _REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchFailed(f"{_short(url)} redirected nowhere")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise FetchFailed(f"{_short(url)} answered {response.status}")
                body = self._read(response, url)
                content_type = response.getheader("Content-Type") or "application/octet-stream"
                return URLFetcherResponse(url, body, {"Content-Type": content_type})
            finally:
                connection.close()
        raise FetchRefused(f"more than {self._policy.max_redirects} redirects")

    def _send(self, url: str) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchRefused(f"{_short(url)}: {scheme or 'relative'} URLs are not allowed")
        host = (parts.hostname or "").lower().rstrip(".")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise FetchRefused(f"{_short(url)}: invalid port") from None
        if not host or host not in self._policy.allowed_hosts:
            raise FetchRefused(f"{_short(url)}: host {host!r} is not on the allow-list")

        address = self._vetted_address(host, port)
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = _PinnedHTTPSConnection(host, port, address, self._policy.timeout)
        else:
            connection = _PinnedHTTPConnection(host, port, address, self._policy.timeout)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        try:
            connection.request(
                "GET",
                target,
                headers={"User-Agent": self._policy.user_agent, "Accept-Encoding": "identity"},
            )
            return connection.getresponse(), connection
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise FetchFailed(f"{_short(url)}: {type(exc).__name__}: {exc}") from None

    def _vetted_address(self, host: str, port: int) -> str:
        addresses = self._resolver(host, port)
        if not addresses:
            raise FetchFailed(f"{host} has no address")
        if f"{host}:{port}" in self._policy.internal_allow_list:
            return addresses[0]
        for address in addresses:
            if not is_public_address(address):
                raise FetchRefused(f"{host} resolves to {address}, which is not a public address")
        return addresses[0]

    def _read(self, response: http.client.HTTPResponse, url: str) -> bytes:
        length = response.getheader("Content-Length")
        if length and length.isdigit():
            self._check_size(int(length), _short(url))
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            self._check_size(size, _short(url))
            chunks.append(chunk)
        self._count(size, _short(url))
        return b"".join(chunks)

    def _check_size(self, size: int, what: str) -> None:
        if size > self._policy.max_resource_bytes:
            raise TooLarge(f"{what} is larger than {self._policy.max_resource_bytes} bytes")
        if self._fetched + size > self._policy.max_total_bytes:
            raise TooLarge(
                f"the resources fetched add up to more than {self._policy.max_total_bytes} bytes"
            )

    def _count(self, size: int, what: str) -> None:
        self._check_size(size, what)
        self._fetched += size


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand, whatever DNS says later."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address, verifying the certificate of the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else f"{url[:limit]}..."
