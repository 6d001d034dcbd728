"""Where a webhook may be delivered: public addresses only, checked when resolved.

An endpoint's host must resolve only to global unicast addresses: never
loopback, private, link-local (169.254.169.254 included), shared, multicast,
reserved or unspecified, nor an IPv4-mapped form of one of those. The check
runs at registration and again inside the HTTP client's resolver on every
delivery, so the connection goes to the very addresses that were checked
and a DNS answer that changes later (rebinding) is caught. Hosts in the
allow-list skip the check and may use plain HTTP.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from wharf_common.errors import Unprocessable


class RefusedDestination(OSError):
    """A delivery's host is, or resolves to, an address webhooks never reach."""


def address_allowed(address: str) -> bool:
    """True for a global unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check_url(url: str, allowed_hosts: Collection[str]) -> str:
    """Return the URL's host after the checks that need no DNS; raise RefusedDestination."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise RefusedDestination("the URL has no host")
    if parts.username or parts.password:
        raise RefusedDestination("the URL must not carry credentials")
    if host in allowed_hosts:
        if parts.scheme not in {"https", "http"}:
            raise RefusedDestination("the URL must be http or https")
        return host
    if parts.scheme != "https":
        raise RefusedDestination("the URL must be https")
    literal = _literal(host)
    if literal is not None and not address_allowed(literal):
        raise RefusedDestination(f"{host} is not a public address")
    return host


async def check_endpoint(url: str, allowed_hosts: Collection[str]) -> None:
    """Refuse an endpoint at registration (422) unless every address it resolves to is public."""
    try:
        host = check_url(url, allowed_hosts)
        if host in allowed_hosts or _literal(host) is not None:
            return
        port = urlsplit(url).port or 443
        await GuardedResolver(allowed_hosts).resolve(host, port, socket.AF_UNSPEC)
    except RefusedDestination as exc:
        raise Unprocessable(f"refused webhook URL: {exc}") from None
    except (OSError, ValueError) as exc:
        raise Unprocessable(f"refused webhook URL: cannot resolve it ({exc})") from None


class GuardedResolver(AbstractResolver):
    """The HTTP client's resolver: refuses the host if any address it resolves to is not public."""

    def __init__(
        self, allowed_hosts: Collection[str], resolver: AbstractResolver | None = None
    ) -> None:
        self._allowed = {host.lower() for host in allowed_hosts}
        self._resolver = resolver or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host` and return its addresses only if every one may be reached."""
        results = await self._resolver.resolve(host, port, family)
        if host.lower() in self._allowed:
            return results
        refused = [r["host"] for r in results if not address_allowed(r["host"])]
        if refused or not results:
            raise RefusedDestination(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._resolver.close()
