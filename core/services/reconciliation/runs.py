"""Reconciliation run from the admin site: by STK Query, by an uploaded statement, or both
(Properties 57-59), with the report kept a while for its CSV download."""

from __future__ import annotations

import io
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from core.runtime import Runtime
from core.services import audit
from core.services.reconciliation.reconcile import ENVIRONMENTS, ReconciliationReport, reconcile
from core.services.settings.gateway import MpesaRouter

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # the admin form's limit (the CLI reads files up to 10 MB)
REPORT_TTL_S = 30 * 60
MAX_KEPT_REPORTS = 20


class ReconciliationRequestError(ValueError):
    """The form asks for something impossible; ``str()`` is safe to show."""


@dataclass(frozen=True)
class ReconciliationRequest:
    environment: str
    statement: bytes | None
    use_query: bool


def check_request(environment: str, statement: bytes | None, use_query: bool) -> ReconciliationRequest:
    if environment not in ENVIRONMENTS:
        raise ReconciliationRequestError(f"Environment must be one of {', '.join(ENVIRONMENTS)}.")
    if statement is not None and len(statement) > MAX_UPLOAD_BYTES:
        raise ReconciliationRequestError(too_large_message())
    if statement is None and not use_query:
        raise ReconciliationRequestError("Upload a statement CSV, tick 'Ask M-Pesa (STK Query)', or both.")
    return ReconciliationRequest(environment, statement, use_query)


def too_large_message() -> str:
    return (
        f"The statement is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB. Export a shorter period "
        "from the M-Pesa portal and upload it in parts. Nothing was changed."
    )


async def run_reconciliation(
    runtime: Runtime, router: MpesaRouter, request: ReconciliationRequest, *, admin_id: int
) -> ReconciliationReport:
    """Compare and flag (``reconcile`` audits the run); a bad statement raises StatementError first."""
    return await reconcile_with_saved_settings(runtime, router, request, actor=f"admin:{admin_id}")


async def reconcile_with_saved_settings(
    runtime: Runtime, router: MpesaRouter, request: ReconciliationRequest, *, actor: str
) -> ReconciliationReport:
    """``reconcile`` with the mode's saved credentials (STK Query) and short codes (statement check)."""
    route = await router.route_for(request.environment)
    return await reconcile(
        runtime,
        environment=request.environment,
        statement=request.statement,
        query=route.gateway.stk_query if request.use_query else None,
        actor=actor,
        short_codes=await statement_short_codes(router, request.environment),
    )


async def record_page_view(runtime: Runtime, *, admin_id: int, what: str, filters: dict[str, object]) -> None:
    """Property 69 for the reconciliation pages (they show payment data)."""
    async with runtime.uow() as uow:
        await audit.record_admin_access(uow.session, admin_id=admin_id, what=what, filters=filters)
        await uow.commit()


def report_csv(report: ReconciliationReport) -> str:
    """The report as CSV text (every text cell neutralised against spreadsheet formulas)."""
    out = io.StringIO()
    report.to_csv(out)
    return out.getvalue()


class ReportCache:
    """The last few reports of this process, for the "download as CSV" link (30 minutes).

    In memory on purpose: a report is a view of a run already audited and flagged in the
    database; behind a load balancer the link may land on another process, which then asks
    for the run to be repeated (runs are idempotent).
    """

    def __init__(self, ttl_s: float = REPORT_TTL_S, size: int = MAX_KEPT_REPORTS) -> None:
        self._ttl, self._size = ttl_s, size
        self._items: OrderedDict[str, tuple[int, float, ReconciliationReport]] = OrderedDict()

    def put(self, admin_id: int, report: ReconciliationReport) -> str:
        token = secrets.token_urlsafe(16)
        self._items[token] = (admin_id, time.monotonic() + self._ttl, report)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return token

    def get(self, admin_id: int, token: str) -> ReconciliationReport | None:
        item = self._items.get(token)
        if item is None or item[0] != admin_id or item[1] < time.monotonic():
            return None
        return item[2]


async def statement_short_codes(router: MpesaRouter, environment: str) -> frozenset[str] | None:
    """The short codes a statement must be for: the configured ones, not public defaults."""
    settings = getattr(router, "settings", None)
    if settings is None:
        return None  # a plain gateway: reconcile falls back to the environment's short codes
    config = await settings.config_for(environment)
    codes = {config.till_number} if config.till_number else set()
    if config.short_code and config.sources.get("short_code") != "default":
        codes.add(config.short_code)
    return frozenset(codes)
