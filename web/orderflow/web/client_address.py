"""Who is the client? The peer address, or — behind proxies we were told to trust —
the address they report in ``X-Forwarded-For``.

Anyone can send an ``X-Forwarded-For`` header, so believing it from everybody would
let a script pick a fresh "address" per request and walk around any per-client limit.
The header is read only when the peer itself is a trusted proxy
(``ORDERFLOW_TRUSTED_PROXIES``: addresses or CIDR blocks), and then from the right:
each trusted hop is skipped, and the first address that is not a trusted proxy is
the client — the hop our own proxies saw, which the client cannot forge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; raises ``ValueError`` naming a bad entry."""
    networks = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR block: {entry!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's address as text (``peer`` itself when it is no trusted proxy)."""
    peer_address = _address(peer)
    if peer_address is None or not proxies or not _trusted(peer_address, proxies):
        return peer
    client = peer_address
    for hop in reversed((forwarded_for or "").split(",")):
        address = _address(hop)
        if address is None:  # garbage in the chain: stop at the last address we trust
            break
        client = address
        if not _trusted(address, proxies):
            break
    return str(client)
