"""What an admin view can reach: the dependencies handed in by the composition root, the
signed-in admin, the active M-Pesa environment.

Views get everything through these functions, never through globals or ``smiling_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from core.config import MpesaEnvironment
from core.runtime import Runtime
from core.services.ops.admins import AdminIdentity
from core.services.reconciliation.runs import ReportCache
from core.services.settings.crypto import SettingsCipher
from core.services.settings.gateway import ConfiguredDaraja
from core.services.settings.mpesa import MpesaSettings

if TYPE_CHECKING:  # only for the type: views must not need the payment stack to import
    from core.services.payments.initiate import DarajaGateway, PaymentService

PREFIX = "/admin"


@dataclass
class AdminDeps:
    """The services the admin site uses; add a field (with a default) when a page needs more."""

    runtime: Runtime
    secret_key: str
    daraja: DarajaGateway | None = None  # the payments' gateway (settings and reconciliation use mpesa)
    payments: PaymentService | None = None
    # Saved M-Pesa mode and credentials with a Daraja client per configuration (settings,
    # connectivity test, STK-Query reconciliation); built from runtime + secret_key when not given.
    mpesa: ConfiguredDaraja = field(default=None)  # type: ignore[assignment]

    reports: ReportCache = field(default_factory=ReportCache)  # reconciliation reports for the CSV link

    def __post_init__(self) -> None:
        if self.mpesa is None:
            self.mpesa = ConfiguredDaraja(MpesaSettings(self.runtime, SettingsCipher(self.secret_key)))


DEPS = web.AppKey("admin_deps", AdminDeps)
_ADMIN = web.RequestKey("admin_identity", AdminIdentity)  # the signed-in admin


def deps(request: web.Request) -> AdminDeps:
    """The admin site's dependencies (``request.app`` is the admin sub-application)."""
    return request.app[DEPS]


def runtime(request: web.Request) -> Runtime:
    """Settings, database (``runtime.uow()``) and clock (``runtime.clock()``)."""
    return request.app[DEPS].runtime


def current_admin(request: web.Request) -> AdminIdentity:
    """The signed-in admin (every route but the login page has one; the middleware made sure)."""
    admin: AdminIdentity | None = request.get(_ADMIN)
    if admin is None:
        raise RuntimeError("no admin on this request: the route is not behind the auth middleware")
    return admin


def set_current_admin(request: web.Request, admin: AdminIdentity) -> None:
    request[_ADMIN] = admin


def signed_in_admin(request: web.Request) -> AdminIdentity | None:
    """The admin when signed in, else None (for templates and the login page)."""
    return request.get(_ADMIN)


async def active_environment(request: web.Request) -> MpesaEnvironment:
    """The M-Pesa environment payments go to now: reports default to it (Property 81).

    The one place that answers it for the admin site: the mode saved by an admin on the
    settings page, else MPESA_ENVIRONMENT.
    """
    return await mpesa(request).settings.active_environment()  # type: ignore[return-value]


def mpesa(request: web.Request) -> ConfiguredDaraja:
    """The saved M-Pesa configuration and its Daraja clients."""
    return request.app[DEPS].mpesa
