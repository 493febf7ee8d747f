"""Where a job may fetch its source from.

With JELLYFIN_URL: only Jellyfin's origin (scheme, host, port); the source URL is always
built on it, and redirects are followed only within it. Standalone: any host, or only those
of SOURCE_ALLOW (host names or CIDRs) when it is set. Link-local and cloud metadata
addresses are refused always: a source URL must never reach the host's own metadata service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NEVER = [  # link-local (AWS, GCP, Azure metadata at 169.254.169.254) and other metadata
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS over IPv6
]


class SourceRefused(Exception):
    """The source's address is not allowed; the message names no internal address."""


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


@dataclass(frozen=True, slots=True)
class SourceRules:
    jellyfin: tuple[str, str, int] | None = None  # the only origin in Jellyfin mode
    names: frozenset[str] = frozenset()  # SOURCE_ALLOW host names (standalone)
    networks: tuple[Network, ...] = ()  # SOURCE_ALLOW networks (standalone)

    @classmethod
    def build(cls, jellyfin_url: str | None, allow: str | None) -> SourceRules:
        names, networks = set(), []
        for entry in (allow or "").replace(";", ",").split(","):
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)
        return cls(
            origin(jellyfin_url) if jellyfin_url else None, frozenset(names), tuple(networks)
        )

    @property
    def restricted(self) -> bool:
        return bool(self.names or self.networks)

    def same_origin(self, first: str, then: str) -> bool:
        return origin(first) == origin(then)

    async def check(self, url: str) -> None:
        """Raise SourceRefused unless ``url`` may be fetched (resolving its host)."""
        scheme, host, port = origin(url)
        if scheme not in ("http", "https") or not host:
            raise SourceRefused("the source is not an http(s) URL")
        if self.jellyfin is not None and (scheme, host, port) != self.jellyfin:
            raise SourceRefused("the source is not on the Jellyfin server")
        addresses = await _resolve(host, port)
        if any(a in net for a in addresses for net in NEVER):
            raise SourceRefused("the source's address is link-local or a metadata service")
        listed = host in self.names or (
            bool(addresses) and all(any(a in n for n in self.networks) for a in addresses)
        )
        if self.jellyfin is None and self.restricted and not listed:
            raise SourceRefused("the source's host is not allowed (SOURCE_ALLOW)")


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []  # the connection will fail and say so
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
