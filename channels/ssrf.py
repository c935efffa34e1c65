"""Server-side request forgery guard for webhook targets (and Slack incoming-webhook URLs).

Resolve once, check every address the name resolves to, then connect to exactly the addresses
checked: `GuardedResolver` is the aiohttp connector's resolver, so there is no second DNS lookup
that could answer differently (DNS rebinding). IP literals never reach a resolver in aiohttp, so
`check_url_host` checks them before the request. Ranges from PITFALLS.md; IPv4-mapped and NAT64
IPv6 addresses are checked through their embedded IPv4 address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Awaitable, Callable, Optional

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address

BLOCKED_NETWORKS = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::1/128", "::/128", "fc00::/7", "fe80::/10", "::ffff:0:0/96", "64:ff9b::/96", "ff00::/8",
)]

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
        elif ip in ipaddress.ip_network("64:ff9b::/96"):
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
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(bare))
    except OSError:
        return "0.0.0.0"  # aiohttp would treat it as an address we cannot read: refuse it


def check_url_host(host: str, allow_private: bool) -> None:
    """IP-literal hosts (aiohttp connects to them without resolving) are checked here."""
    if allow_private:
        return
    address = literal_address(host)
    if address is None:
        return
    reason = blocked_reason(address)
    if reason:
        raise SsrfRefused(f"target refused: address is {reason}")


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
