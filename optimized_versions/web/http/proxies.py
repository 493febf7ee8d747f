"""A reverse proxy in front (TLS, a sub-path): the client's address and scheme it reports.

Only a proxy named in ``TRUSTED_PROXIES`` is believed. Its ``X-Forwarded-For`` is read from
the right, past every trusted hop, so a client cannot choose the address its failed sign-ins
are counted against by sending a header of its own. ``X-Forwarded-Proto: https`` makes the
session cookie ``Secure``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ...errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str | None) -> tuple[Network, ...]:
    """ "127.0.0.1, 172.16.0.0/12" -> networks; a bad entry stops the start with its name."""
    networks = []
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                f"TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from None
    return tuple(networks)


def _trusted(address: str | None, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.BaseRequest, networks: tuple[Network, ...]) -> str:
    """The first address left of the trusted hops in X-Forwarded-For (or the peer's)."""
    address = request.remote or "unknown"
    if not _trusted(address, networks):
        return address
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # garbage where an address belongs: believe the peer
    return address


def forwarded_middleware(networks: tuple[Network, ...]) -> Middleware:
    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not _trusted(request.remote, networks):
            return await handler(request)
        proto = request.headers.get("X-Forwarded-Proto", "").rsplit(",", 1)[-1].strip().lower()
        scheme = proto if proto in ("http", "https") else request.scheme
        changed = request.clone(remote=client_address(request, networks), scheme=scheme)
        return await handler(changed)

    return forwarded
