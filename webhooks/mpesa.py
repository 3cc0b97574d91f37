"""``POST /hooks/lnm/{secret}``: Safaricom's STK Push result (Properties 20, 46, 53, 75).

Authenticate first (the per-attempt secret in the path), then parse, then store; the
view only checks the source address and hands the body to the intake service.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from core.config import Settings
from core.services.payments.intake import CallbackIntake

log = logging.getLogger(__name__)

INTAKE = web.AppKey("mpesa_intake", CallbackIntake)
SETTINGS = web.AppKey("mpesa_settings", Settings)
MAX_CALLBACK_BYTES = 64 * 1024
FORBIDDEN = {"ResultCode": 1, "ResultDesc": "Forbidden"}


def source_ip(request: web.Request, settings: Settings) -> str:
    """The caller's address; X-Forwarded-For is believed only from configured proxies."""
    remote = request.remote or ""
    proxies = settings.trusted_proxy_networks
    if not proxies or not _in(remote, proxies):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):  # the right-most address not added by one of our proxies
        if not _in(hop, proxies):
            return hop
    return remote


def _in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


async def stk_callback(request: web.Request) -> web.Response:
    """Verify, store and acknowledge one STK result."""
    settings = request.app[SETTINGS]
    allowed = settings.callback_allowed_networks
    if allowed:
        ip = source_ip(request, settings)
        if not _in(ip, allowed):
            log.warning("security: callback from an address outside the allow-list",
                        extra={"source": ip, "mode": settings.mpesa_callback_ip_mode})
            if settings.mpesa_callback_ip_mode == "enforce":
                return web.json_response(FORBIDDEN, status=403)
    if request.content_length is not None and request.content_length > MAX_CALLBACK_BYTES:
        return web.json_response({"ResultCode": 1, "ResultDesc": "Rejected: body too large"}, status=400)
    body = await request.content.read(MAX_CALLBACK_BYTES + 1)
    if len(body) > MAX_CALLBACK_BYTES:
        return web.json_response({"ResultCode": 1, "ResultDesc": "Rejected: body too large"}, status=400)
    answer = await request.app[INTAKE].submit(request.match_info["secret"], body)
    return web.json_response(answer.body, status=answer.status)


def setup_mpesa_callbacks(app: web.Application, intake: CallbackIntake, settings: Settings) -> None:
    """Register the STK callback route."""
    app[INTAKE] = intake
    app[SETTINGS] = settings
    app.router.add_post("/hooks/lnm/{secret}", stk_callback)
