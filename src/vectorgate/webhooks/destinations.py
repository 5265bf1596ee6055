"""Where a webhook may send (SPEC 10.1): the URL rules and the addresses its host has.

`check_destination` is the one place that decides: at creation, and (part of delivery)
again before each attempt, which then connects to exactly the addresses it returned, so
nothing can re-resolve the name in between (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A receiver's URL is a short thing; browsers and proxies commonly stop near 2 KiB.
MAX_URL_LENGTH = 2048
# A name that does not resolve within this is treated as one that does not resolve: a
# creation request must not wait on a slow resolver for longer than a client would.
RESOLVE_TIMEOUT_S = 5.0

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) -> the addresses the host has, as text; raises OSError when it has none."""


class DestinationRefused(Exception):
    """A URL no webhook may send to; `reason` says why, fit to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL and the addresses it was checked with: connect to these only."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


# getaddrinfo cannot be cancelled: past our timeout its thread stays busy until the
# system resolver gives up (tens of seconds for a name server that never answers). In the
# default thread pool, a few webhooks naming such hosts would stall every upload that
# parses in a thread; in a pool of their own they only queue behind each other.
_RESOLVER_THREADS = 4
_resolver_pool = ThreadPoolExecutor(_RESOLVER_THREADS, thread_name_prefix="webhook-resolve")


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The system's resolver (getaddrinfo), in threads of its own so that neither the
    event loop nor the default thread pool waits on a slow name server."""
    lookup = partial(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    infos = await asyncio.get_running_loop().run_in_executor(_resolver_pool, lookup)
    return [str(info[4][0]) for info in infos]


def refused_address(address: IPAddress) -> str | None:
    """Why `address` is no place for a webhook (None: it is globally routable).

    An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is judged as the IPv4 address it
    carries; a 6to4 or Teredo address is refused when the IPv4 address it embeds
    is. Shared (100.64/10) and documentation ranges are not private in every Python's
    table, so anything not global is refused as well.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            # 6to4 and Teredo addresses carry an IPv4 address a relay would reach.
            embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
            if embedded is not None:
                kind = refused_address(embedded)
                if kind is not None:
                    return f"{kind} (embedded {embedded})"
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    for refused, kind in checks:
        if refused:
            return kind
    return None


def parse_url(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL a webhook may have, or DestinationRefused."""
    if len(url) > MAX_URL_LENGTH:
        raise DestinationRefused(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) > 0x7E for char in url):
        # What is checked is what is called: no spaces, controls or non-ASCII (a name in
        # another script is given in its xn-- form).
        raise DestinationRefused("url must be printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"url is not a valid URL ({exc})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise DestinationRefused(
            "url must start with https://"
            if not allow_private
            else "url must start with https:// or http://"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise DestinationRefused("url must not contain user information (user:password@)")
    if parts.fragment or url.endswith("#"):
        raise DestinationRefused("url must not contain a fragment (#...)")
    host = parts.hostname
    if not host:
        raise DestinationRefused("url has no host")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


async def check_destination(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> Destination:
    """The checked destination of `url`, or DestinationRefused saying why.

    Every address the host resolves to must be globally routable (one bad address is
    enough to refuse: a client cannot choose which one a connection gets); an address
    literal is judged as it is, without a lookup. `allow_private` lifts the address rule
    and admits http (SPEC 10.1); the host must still resolve, since delivery connects
    to an address.
    """
    scheme, host, port = parse_url(url, allow_private=allow_private)
    literal = _address_literal(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        addresses = await _resolve(host, port, resolver, timeout_s)
    if not allow_private:
        for address in addresses:
            kind = refused_address(address)
            if kind is not None:
                shown = "" if literal is not None else f"{host} resolves to "
                raise DestinationRefused(
                    f"url's host is not a public address: {shown}{address}, which is {kind}"
                )
    return Destination(url, scheme, host, port, addresses)


def _address_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(
    host: str, port: int, resolver: Resolver, timeout_s: float
) -> tuple[IPAddress, ...]:
    try:
        found = await asyncio.wait_for(resolver(host, port), timeout_s)
    except TimeoutError:
        raise DestinationRefused(
            f"url's host {host} did not resolve within {timeout_s:g} s"
        ) from None
    except (OSError, UnicodeError):
        raise DestinationRefused(f"url's host {host} does not resolve") from None
    addresses: list[IPAddress] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])  # without an IPv6 zone
        except ValueError:
            raise DestinationRefused(
                f"url's host {host} resolves to something not an address"
            ) from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(f"url's host {host} does not resolve")
    return tuple(addresses)
