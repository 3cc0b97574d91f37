"""``GET /admin/``: the dashboard's figures on seeded attempts, its audit entry, its environment."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Outbox
from core.domain.states import PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services import audit
from core.services.reporting.dashboard import dashboard, failure_reason
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking
from tests.support.admin import admin_site
from tests.support.payments import Clock

# Monday 4 March 2030, 12:00 in Nairobi (UTC+3): Nairobi's "today" began at 21:00 UTC on the 3rd.
NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
NAIROBI_MIDNIGHT = datetime(2030, 3, 3, 21, 0, tzinfo=UTC)
SANDBOX = {"MPESA_ENVIRONMENT": "sandbox", "MPESA_CONSUMER_KEY": "k", "MPESA_CONSUMER_SECRET": "s",
           "SECRET_KEY": "UGNcPTHOh4H7RvzVvRQDFhjCl_Ku2N5NWsKldVX9qaY"}


@pytest.fixture
async def clocked(database_url: str) -> AsyncIterator[Runtime]:
    rt = build_runtime(make_settings(database_url), clock=Clock(start=NOW))
    try:
        yield rt
    finally:
        await rt.close()


async def _attempt(runtime: Runtime, status: PaymentStatus, amount: int, at: datetime, *,
                   confirm_s: float | None = None, code: str | None = None, environment: str = "simulator",
                   **extra: Any) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, price_kes=amount)
        settled = at + timedelta(seconds=confirm_s) if confirm_s is not None else None
        await make_attempt(uow.session, booking, status=status, amount_kes=amount, created_at=at,
                           settled_at=settled, result_code=code, environment=environment, **extra)
        await uow.commit()


async def seed(runtime: Runtime) -> None:
    """Simulator attempts over 40 days plus the noise the dashboard must leave out."""
    paid, hours = PaymentStatus.PAID, timedelta(hours=1)
    # today (Nairobi): 3 paid (30 s, 50 s, 60 s to confirm), 1 failed, 1 cancelled
    await _attempt(runtime, paid, 2500, NOW - hours, confirm_s=30)
    await _attempt(runtime, paid, 4000, NOW - 2 * hours, confirm_s=50, paid_amount_kes=4000)
    await _attempt(runtime, paid, 1500, NAIROBI_MIDNIGHT + timedelta(minutes=30), confirm_s=60)
    await _attempt(runtime, PaymentStatus.FAILED, 2500, NOW - 3 * hours, code="1")
    await _attempt(runtime, PaymentStatus.CANCELLED, 2500, NOW - 3 * hours, code="1032")
    # yesterday 23:30 in Nairobi: in the 7 days, not today
    await _attempt(runtime, paid, 1000, NAIROBI_MIDNIGHT - timedelta(minutes=30), confirm_s=20)
    await _attempt(runtime, paid, 2000, NOW - timedelta(days=3), confirm_s=40)
    await _attempt(runtime, PaymentStatus.TIMED_OUT, 2000, NOW - timedelta(days=3), code="1037")
    await _attempt(runtime, paid, 2500, NOW - timedelta(days=20), confirm_s=100)
    await _attempt(runtime, PaymentStatus.FAILED, 2500, NOW - timedelta(days=20), code="1")
    # left out of every figure: older than 30 days, in progress, production money
    await _attempt(runtime, paid, 9999, NOW - timedelta(days=40), confirm_s=5)
    await _attempt(runtime, PaymentStatus.AWAITING_CUSTOMER, 2500, NOW - timedelta(minutes=1))
    await _attempt(runtime, paid, 50000, NOW - hours, confirm_s=1, environment="production")
    # work waiting: one attempt to review, one failed notification, two refunds due (one resolved)
    await _attempt(runtime, PaymentStatus.NEEDS_REVIEW, 2500, NOW - hours)
    async with runtime.uow() as uow:
        uow.session.add(Outbox(channel="sms", recipient="254700000001", template="reminder_24h", data={},
                               dedupe_key="dash-1", status="FAILED", last_error="rejected"))
        first = await audit.record(uow.session, actor="system", action="booking.refund_due",
                                   subject_type="booking", subject_id=1, details={"amount_kes": 2500})
        await audit.record(uow.session, actor="system", action="booking.refund_due",
                           subject_type="booking", subject_id=2, details={"amount_kes": 4000})
        await audit.record(uow.session, actor="admin:1", action="review.resolved",
                           subject_type="refund_due", subject_id=first.seq, details={"action": "refunded"})
        await uow.commit()


async def test_figures_for_today_seven_and_thirty_days_in_nairobi_days(clocked: Runtime) -> None:
    await seed(clocked)
    figures = await dashboard(clocked, environment="simulator")
    today, week, month = figures.periods
    assert (today.revenue_kes, today.payments, today.finished) == (8000, 3, 5)
    assert today.success_rate == pytest.approx(0.6)
    assert today.median_confirm_seconds == pytest.approx(50, abs=0.01)
    cancelled = failure_reason("CANCELLED", "1032")
    assert dict(today.failures_by_reason) == {"Insufficient balance (1)": 1, cancelled: 1}
    assert (week.revenue_kes, week.payments, week.finished) == (11000, 5, 8)
    assert week.median_confirm_seconds == pytest.approx(40, abs=0.01)
    assert (month.revenue_kes, month.payments, month.finished) == (13500, 6, 10)
    assert month.median_confirm_seconds == pytest.approx(45, abs=0.01)  # even count: mean of 40 and 50
    assert dict(month.failures_by_reason)["Insufficient balance (1)"] == 2
    waiting = figures.waiting
    assert (waiting.needs_review, waiting.failed_notifications, waiting.refunds_due) == (1, 1, 1)


async def test_the_daily_series_has_thirty_nairobi_days_ending_today(clocked: Runtime) -> None:
    await seed(clocked)
    days = (await dashboard(clocked, environment="simulator")).days
    assert len(days) == 30
    assert days[-1].day.isoformat() == "2030-03-04" and days[0].day.isoformat() == "2030-02-03"
    assert (days[-1].revenue_kes, days[-2].revenue_kes) == (8000, 1000)
    assert days[-4].success_rate == pytest.approx(0.5)  # 3 days ago: one paid, one timed out
    assert days[-5].success_rate is None  # nothing finished that day


# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
async def test_production_figures_never_include_test_money(clocked: Runtime) -> None:
    await seed(clocked)
    production = (await dashboard(clocked, environment="production")).periods[0]
    assert (production.revenue_kes, production.payments) == (50000, 1)
    sandbox = (await dashboard(clocked, environment="sandbox")).periods[2]
    assert (sandbox.revenue_kes, sandbox.payments, sandbox.finished) == (0, 0, 0)


async def test_the_page_shows_the_figures_and_the_work_waiting(clocked: Runtime) -> None:
    await seed(clocked)
    async with admin_site(clocked) as admin:
        response = await admin.get("/admin/")
        html = await response.text()
    assert response.status == 200
    today = html.split('id="period-1"', 1)[1].split('id="period-7"', 1)[0]
    assert "KES 8,000" in today and "60.0%" in today and "50 s" in today
    assert "Insufficient balance (1)" in today
    assert re.search(r'id="count-review">1<', html) and re.search(r'id="count-refunds">1<', html)
    assert re.search(r'id="count-notifications">1<', html)
    assert 'src="data:image/svg+xml;base64,' in html  # the chart, drawn on the server
    assert "KES 50,000" not in html  # production money is not on the simulator dashboard


# Feature: mpesa-payment-integration, Property 69: Admin Access Logs Required Fields
async def test_every_dashboard_read_is_audited_with_admin_route_filters_and_time(clocked: Runtime) -> None:
    async with admin_site(clocked) as admin:
        await admin.get("/admin/")
        await admin.get("/admin/?environment=production")
        async with clocked.uow() as uow:
            entries = (await uow.session.scalars(
                select(AuditEntry).where(AuditEntry.action == "admin.accessed").order_by(AuditEntry.seq)
            )).all()
    assert [e.actor for e in entries] == [f"admin:{admin.admin_id}"] * 2
    assert [e.details for e in entries] == [
        {"what": "/admin/", "filters": {"environment": "simulator"}},
        {"what": "/admin/", "filters": {"environment": "production"}},
    ]
    assert all(abs(e.at - datetime.now(UTC)) < timedelta(minutes=5) for e in entries)


# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
async def test_the_dashboard_defaults_to_the_active_environment(database_url: str) -> None:
    rt = build_runtime(make_settings(database_url, **SANDBOX), clock=Clock(start=NOW))
    try:
        hour_ago = NOW - timedelta(hours=1)
        await _attempt(rt, PaymentStatus.PAID, 3000, hour_ago, confirm_s=10, environment="sandbox")
        await _attempt(rt, PaymentStatus.PAID, 7000, hour_ago, confirm_s=10)  # simulator
        async with admin_site(rt) as admin:
            html = await (await admin.get("/admin/")).text()
        assert "KES 3,000" in html and "KES 7,000" not in html
        assert '<option value="sandbox" selected>' in html
    finally:
        await rt.close()


@pytest.mark.parametrize("value", ["live", "<script>", "production'--", "x" * 5000])
async def test_an_unknown_environment_gets_a_clear_message_and_no_audit_entry(
    clocked: Runtime, value: str
) -> None:
    async with admin_site(clocked) as admin:
        response = await admin.get("/admin/", params={"environment": value})
        html = await response.text()
        async with clocked.uow() as uow:
            reads = (await uow.session.scalars(
                select(AuditEntry).where(AuditEntry.action == "admin.accessed")
            )).all()
    assert response.status == 400
    assert "Unknown environment" in html and "<script>" not in html
    assert reads == []
