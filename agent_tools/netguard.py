"""Outgoing URLs an owner supplies (webhooks): only public addresses, checked on every use.

A webhook URL is a request this server makes on an owner's behalf; pointed at 127.0.0.1,
a private network or a cloud metadata address it would reach what only the server may reach
(SSRF). The name is resolved and every address checked at registration and again at each
delivery (DNS can change in between), and the delivery connects to the address that was
checked, so a name cannot resolve to a public address for the check and a private one for
the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent_tools.errors import ValidationFailed

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: its host (for `Host` and TLS) and the checked address."""

    url: str
    host: str
    address: str | None
    """The resolved address to connect to; None when private addresses are allowed."""

    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        if self.address is None:
            return self.url
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()


def _public(ip: IpAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # `is_global` is false for loopback, private, link-local (169.254.169.254, the cloud
    # metadata address), shared (100.64/10), reserved and documentation ranges.
    return ip.is_global and not ip.is_multicast


def check_syntax(url: str) -> str:
    """An absolute http(s) URL without credentials, or `ValidationFailed`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationFailed("the URL is not valid", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("the URL must be http:// or https:// with a host", field="url")
    if parts.username or parts.password:
        raise ValidationFailed("the URL must not carry credentials", field="url")
    if port == 0:
        raise ValidationFailed("the URL's port is not valid", field="url")
    return url


async def resolve(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host and check every address; `ValidationFailed` when one is not
    public (unless `allow_private`) or the name does not resolve."""
    check_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_private:
        return Target(url, host, None)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValidationFailed(f"the host {host!r} does not resolve", field="url") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise ValidationFailed(f"the host {host!r} does not resolve", field="url")
    refused = [a for a in addresses if not _public(a)]
    if refused:
        raise ValidationFailed(
            f"the URL resolves to a non-public address ({refused[0]})",
            field="url",
            hint="webhooks go to public addresses only; for local development set"
            " AGENT_ORDERS_WEBHOOK_ALLOW_PRIVATE=1",
        )
    return Target(url, host, str(addresses[0]))
