"""``POST /hooks/lnm/{secret}``: Safaricom's STK Push result (Properties 20, 46, 53, 75).

Authenticate first (the per-attempt secret in the path), then parse, then store; the
view only checks the source address, reads the whole body (capped) and hands it to the
intake service. Every refused callback is logged with its source address through the
rate-limited security log.
"""

from __future__ import annotations

from aiohttp import web

from core.config import Settings
from core.services.payments.intake import CallbackIntake
from webhooks.request_body import BodyRejected, read_body
from webhooks.security_log import SECURITY_LOG, install_security_log
from webhooks.source_address import caller_address, in_networks, trust_proxies

INTAKE = web.AppKey("mpesa_intake", CallbackIntake)
SETTINGS = web.AppKey("mpesa_settings", Settings)
MAX_CALLBACK_BYTES = 64 * 1024
FORBIDDEN = {"ResultCode": 1, "ResultDesc": "Forbidden"}


def source_ip(request: web.Request, settings: Settings) -> str:
    """The caller's address; X-Forwarded-For is believed only from configured proxies."""
    return caller_address(request, settings.trusted_proxy_networks)


async def stk_callback(request: web.Request) -> web.Response:
    """Verify, store and acknowledge one STK result."""
    settings = request.app[SETTINGS]
    allowed = settings.callback_allowed_networks
    if allowed:
        ip = source_ip(request, settings)
        if not in_networks(ip, allowed):
            request.app[SECURITY_LOG].warning(
                "callback_address_refused", "callback from an address outside the allow-list",
                source=ip, mode=settings.mpesa_callback_ip_mode,
            )
            if settings.mpesa_callback_ip_mode == "enforce":
                return web.json_response(FORBIDDEN, status=403)
    try:
        body = await read_body(request, MAX_CALLBACK_BYTES)
    except BodyRejected as exc:
        _log_rejected(request, exc.status, exc.reason)
        rejected = {"ResultCode": 1, "ResultDesc": f"Rejected: {exc.reason}"}
        return web.json_response(rejected, status=exc.status)
    answer = await request.app[INTAKE].submit(request.match_info["secret"], body)
    if 400 <= answer.status < 500:
        _log_rejected(request, answer.status, str(answer.body.get("ResultDesc", "")))
    return web.json_response(answer.body, status=answer.status)


def _log_rejected(request: web.Request, status: int, reason: str) -> None:
    """A security line with the caller's address for every refused callback (rate-limited)."""
    source = source_ip(request, request.app[SETTINGS])
    if status == 404:
        request.app[SECURITY_LOG].warning(
            "unknown_callback_secret", "callback with an unknown secret", source=source
        )
    else:
        request.app[SECURITY_LOG].warning(
            "callback_rejected", "callback refused", source=source, status=status, reason=reason[:120]
        )


def setup_mpesa_callbacks(app: web.Application, intake: CallbackIntake, settings: Settings) -> None:
    """Register the STK callback route (and record MPESA_TRUSTED_PROXIES for the app's webhooks)."""
    app[INTAKE] = intake
    app[SETTINGS] = settings
    trust_proxies(app, settings.trusted_proxy_networks)
    install_security_log(app)
    app.router.add_post("/hooks/lnm/{secret}", stk_callback)
