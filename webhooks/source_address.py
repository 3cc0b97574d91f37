"""The caller's address, as the webhooks check and log it.

``X-Forwarded-For`` is believed only when the connection comes from a trusted proxy
(``MPESA_TRUSTED_PROXIES``), and then only its right-most hop not added by one of them.
``setup_mpesa_callbacks`` records the trusted proxies on the application, so the SMS and
Telegram routes beside it log the same address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)


def trust_proxies(app: web.Application, networks: Sequence[Network]) -> None:
    """Believe ``X-Forwarded-For`` from these networks on ``app``'s webhooks (call before start)."""
    app[TRUSTED_PROXIES] = tuple(networks)


def caller_address(request: web.Request, proxies: Sequence[Network] | None = None) -> str:
    """The caller's address; ``proxies`` defaults to those recorded on the application."""
    if proxies is None:
        proxies = request.config_dict.get(TRUSTED_PROXIES, ())
    remote = request.remote or ""
    if not proxies or not in_networks(remote, proxies):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):  # the right-most address not added by one of our proxies
        if not in_networks(hop, proxies):
            return hop
    return remote


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
