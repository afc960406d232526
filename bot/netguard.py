"""The SSRF guard: which addresses newsbot may fetch, checked by name and again at connect time."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

Resolver = Callable[[str, int], Awaitable[Iterable[str]]]
"""Turns (host, port) into IP address strings; injectable so tests never touch DNS."""

RESOLVE_TIMEOUT = 10.0
# Ranges that are not globally routable but that ipaddress's is_private/is_global (Python 3.11)
# do not flag: deprecated site-local IPv6 answered by routers inside many networks, local-use
# NAT64, documentation and SRv6 prefixes, and IPv4 protocol-assignment and 6to4-relay blocks.
_NOT_GLOBAL: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = (
    ("site-local", ipaddress.IPv6Network("fec0::/10")),
    ("local-use NAT64", ipaddress.IPv6Network("64:ff9b:1::/48")),
    ("documentation", ipaddress.IPv6Network("3fff::/20")),
    ("SRv6", ipaddress.IPv6Network("5f00::/16")),
    ("protocol-assignment", ipaddress.IPv4Network("192.0.0.0/24")),
    ("6to4-relay", ipaddress.IPv4Network("192.88.99.0/24")),
)


class UnsafeURL(ValueError):
    """A feed or page address newsbot refuses to fetch; the message says why, for the user."""


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve `host` with the event loop's getaddrinfo and return the IP addresses."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address tunnels to, which must pass the same checks."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _forbidden_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why fetching from `ip` is refused, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            kind = _forbidden_kind(inner)
            if kind:
                return kind
    # Order matters only for the wording: the most specific reason first.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private-network"
    for kind, network in _NOT_GLOBAL:
        if ip.version == network.version and ip in network:
            return kind
    # is_global also excludes shared address space (100.64.0.0/10) and other special ranges.
    if not ip.is_global:
        return "non-public"
    return None


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells directly, including legacy decimal/hex/octal IPv4 forms."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise UnsafeURL(f"{host!r} is not a valid IPv6 address") from None
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    # Resolvers accept "2130706433", "0x7f.1" and "0177.0.0.1" as 127.0.0.1; inet_aton reads
    # them the same way, so these forms cannot sneak past as "host names".
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and re.search(r"\d", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


async def _public_addresses(
    host: str, port: int, resolve: Resolver
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of `host`, raising UnsafeURL unless every one of them is public."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"{host} is a loopback host; newsbot only fetches public addresses")
    literal = _literal_ip(host)
    if literal is not None:
        addresses: list[str] = [str(literal)]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                addresses = list(await resolve(host, port))
        except (OSError, UnicodeError, TimeoutError) as exc:
            raise UnsafeURL(f"cannot resolve host {host} ({exc or type(exc).__name__})") from None
        if not addresses:
            raise UnsafeURL(f"cannot resolve host {host} (no addresses)")
    checked: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise UnsafeURL(f"{host} resolved to an invalid address {address!r}") from None
        kind = _forbidden_kind(ip)
        if kind:
            shown = host if literal is not None else f"{host} resolves to {ip}, which"
            article = "an" if kind[:1] in "aeiou" else "a"
            raise UnsafeURL(
                f"{shown} is {article} {kind} address; newsbot only fetches public addresses"
            )
        checked.append(ip)
    return checked


async def check_url(
    url: str, *, allow_private: bool = False, resolve: Resolver = system_resolve
) -> None:
    """Raise UnsafeURL unless `url` is an http(s) address whose every resolved IP is public."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"{url!r} is not a valid web address ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise UnsafeURL(f"{url!r} is not a web address: give a full http:// or https:// URL")
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"{scheme}: addresses are not allowed, only http:// and https://")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL(f"{url!r} has no host name")
    if parts.username is not None or parts.password is not None:
        # "http://public.example@10.0.0.1/" style addresses exist mainly to mislead readers.
        raise UnsafeURL("addresses with a user name or password are not allowed")
    if not allow_private:
        await _public_addresses(host, port or (443 if scheme == "https" else 80), resolve)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one step, so DNS cannot change between check and connect."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, resolve: Resolver) -> None:
        self._inner = inner
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await _public_addresses(host, port, self._resolve)
        except UnsafeURL as exc:
            raise httpcore.ConnectError(str(exc)) from None
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        # TLS still verifies against the request's host name (SNI), not this address.
        return await self._inner.connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    *, resolve: Resolver = system_resolve, **options: Any
) -> httpx.AsyncHTTPTransport:
    """An httpx transport that connects only to public addresses, checked at connect time."""
    # check_url vets a name before each request, but httpx resolves it again to connect; a
    # DNS-rebinding server can answer "public" first and "10.0.0.1" second. Checking inside
    # the connection pool's network backend closes that gap for every hop.
    transport = httpx.AsyncHTTPTransport(**options)
    pool = transport._pool
    if type(pool) is not httpcore.AsyncConnectionPool:
        raise TypeError("guarded_transport does not support proxies")
    pool._network_backend = _GuardedBackend(pool._network_backend, resolve)
    return transport
