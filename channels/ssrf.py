"""Server-side request forgery guard for webhook targets (and Slack incoming-webhook URLs).

Every URL's host goes through `canonical_host` first (UTS #46, as yarl and the http1 client encode
it), so the check sees the host the client will use: `127。0。0。1` is 127.0.0.1 to the check too.
Resolve once, check every address the name resolves to, then connect to exactly the addresses
checked: `GuardedResolver` is the aiohttp connector's resolver, so there is no second DNS lookup
that could answer differently (DNS rebinding). IP literals never reach a resolver in aiohttp, so
`check_url_host` checks them before the request. Ranges from PITFALLS.md and docs/SECURITY.md;
IPv6 forms that carry an IPv4 address (mapped, IPv4-compatible, 6to4, NAT64) are named by it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Awaitable, Callable, Optional
from urllib.parse import urlsplit, urlunsplit

import idna
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address

BLOCKED_NETWORKS = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "192.0.0.0/24",
    "::1/128", "::/128", "fc00::/7", "fe80::/10", "::ffff:0:0/96", "64:ff9b::/96", "ff00::/8",
    # IPv4-compatible (deprecated), 6to4, local-use NAT64 and site-local (deprecated): all blocked
    # whole; none is a place a webhook receiver lives, and the first three can carry a private IPv4.
    "::/96", "2002::/16", "64:ff9b:1::/48", "fec0::/10",
)]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# DNS caps a name at 253 characters; a longer host is refused before IDNA work is spent on it.
MAX_HOST_LENGTH = 253

# (host, port) -> the IP addresses it resolves to. Tests inject one that maps names to loopback.
Resolve = Callable[[str, int], Awaitable[list[str]]]


class SsrfRefused(Exception):
    """The target resolves to an address webhooks may not reach. Message: the range, not the address."""


def blocked_reason(address: str) -> Optional[str]:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates = [ip]
    # The embedded IPv4 address first: it names the real reason (loopback, metadata...).
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            candidates.insert(0, ip.ipv4_mapped)
        elif ip.sixtofour is not None:
            candidates.insert(0, ip.sixtofour)
        elif ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
            candidates.insert(0, ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in candidates:
        for network in BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                if candidate.is_loopback:
                    return "loopback"
                if candidate.is_link_local:
                    return "link-local or cloud metadata"
                return "private or reserved"
    return None


def canonical_host(host: str) -> str:
    """The host as the HTTP clients put it on the wire, so the check sees what they connect to.

    `host` is urlsplit's `hostname` (lowercased, brackets gone). ASCII stays as it is, as yarl
    keeps it; anything else is mapped by UTS #46 (`idna.encode(uts46=True)`, yarl's rule, with
    Python's IDNA 2003 codec as yarl's fallback), which turns U+3002, U+FF0E and U+FF61 into full
    stops and fullwidth digits into digits. An IPv6 literal comes back in its canonical form.
    Raises SsrfRefused for a host no client could send.
    """
    if not host or len(host) > MAX_HOST_LENGTH:
        raise SsrfRefused("target refused: the host name is empty or too long")
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise SsrfRefused("target refused: the host is not a valid IPv6 address") from None
    if host.isascii():
        return host.lower()
    try:
        encoded = idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        try:
            encoded = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise SsrfRefused("target refused: the host name is not a valid internationalised name") from None
    if len(encoded) > MAX_HOST_LENGTH:
        raise SsrfRefused("target refused: the host name is empty or too long")
    return encoded.lower()


def canonical_url(url: str) -> tuple[str, str]:
    """(the URL with its host in canonical form, that host). Raises SsrfRefused for a URL whose
    host cannot be read; the rest of the URL is kept as written."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SsrfRefused("target refused: not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise SsrfRefused("target refused: only http and https URLs are sent")
    host = canonical_host(parts.hostname or "")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        raise SsrfRefused("target refused: credentials in the URL are not sent")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), host


def literal_address(host: str) -> Optional[str]:
    """The address an IP-literal host means, in canonical form; None for a name.

    aiohttp connects to anything its is_ip_address() accepts without asking the resolver, and
    that includes forms the ipaddress module rejects (2130706433 is 127.0.0.1), so both are asked
    and inet_aton normalises the legacy IPv4 spellings.
    """
    bare = host.strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if not is_ip_address(bare):
        # getaddrinfo reads whatever inet_aton reads (0x7f.0.0.1, 0x7f000001) as an address,
        # never as a name, so it is one here too and is refused before a resolver is asked.
        try:
            return socket.inet_ntoa(socket.inet_aton(bare))
        except (OSError, ValueError):
            return None
    try:
        return socket.inet_ntoa(socket.inet_aton(bare))
    except OSError:
        return "0.0.0.0"  # aiohttp would treat it as an address we cannot read: refuse it


def check_url_host(host: str, allow_private: bool) -> Optional[str]:
    """IP-literal hosts (aiohttp connects to them without resolving) are checked here. `host` must
    be canonical (`canonical_host`). Returns the literal's address, None for a name."""
    address = literal_address(host)
    if address is None or allow_private:
        return address
    reason = blocked_reason(address)
    if reason:
        raise SsrfRefused(f"target refused: address is {reason}")
    return address


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


async def resolve_checked(host: str, port: int, resolve: Resolve, allow_private: bool) -> list[str]:
    """Every address of `host`, or SsrfRefused if any one of them is blocked."""
    addresses = await resolve(host, port)
    if not addresses:
        raise SsrfRefused("target refused: name does not resolve")
    if not allow_private:
        for address in addresses:
            reason = blocked_reason(address)
            if reason:
                raise SsrfRefused(f"target refused: name resolves to a {reason} address")
    return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only checked addresses; the connector connects to those."""

    def __init__(self, allow_private: bool, resolve: Optional[Resolve] = None):
        self.allow_private = allow_private
        self._resolve = resolve or system_resolve

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = await resolve_checked(host, port, self._resolve, self.allow_private)
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for address in addresses]

    async def close(self) -> None:
        return None
