"""The transaction list, its CSV export, one attempt's detail and the test summary, as services
on a real database (SQLite, and PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import date

from sqlalchemy import event

from core.db.models import AuditEntry
from core.services import audit
from core.services.reporting.test_summary import parse_summary_filter, summarise_test_payments
from core.services.reporting.transaction_detail import transaction_detail
from core.services.reporting.transactions import (
    PAGE_SIZE,
    filtered_rows_query,
    list_transactions,
    parse_filter,
)
from core.services.reporting.transactions_csv import HEADER, stream_transactions_csv
from tests.factories import make_booking
from tests.support.admin_money import FORMULA_NAME, bulk_attempts, nairobi, seed_scenario


async def page_for(runtime, active="simulator", **params):
    parsed = parse_filter({k: str(v) for k, v in params.items()}, active_environment=active)
    async with runtime.uow() as uow:
        return await list_transactions(uow.session, parsed)


async def ids_for(runtime, active="simulator", **params) -> set[int]:
    page = await page_for(runtime, active, **params)
    assert page.errors == ()
    return {r.id for r in page.rows}


async def csv_text(runtime, active="simulator", batch_size=1000, **params) -> str:
    parsed = parse_filter({k: str(v) for k, v in params.items()}, active_environment=active)
    return "".join(
        [c async for c in stream_transactions_csv(runtime.uow, parsed.filter, batch_size=batch_size)]
    )


# Feature: mpesa-payment-integration, Property 37: Admin Dashboard Shows All Transactions
# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
async def test_the_list_shows_every_attempt_of_the_active_environment_and_only_those(runtime):
    sc = await seed_scenario(runtime)
    simulator = {sc.ids[n] for n in ("paid", "late_evening", "after_midnight", "formula")}
    assert await ids_for(runtime) == simulator
    assert await ids_for(runtime, active="production") == {sc.ids["production"]}
    assert await ids_for(runtime, active="production", environment="sandbox") == {sc.ids["sandbox"]}
    assert await ids_for(runtime, environment="production") == {sc.ids["production"]}


# Feature: mpesa-payment-integration, Property 38: Transaction Display Contains Required Fields
async def test_each_row_has_date_amount_client_practitioner_reference_and_receipt(runtime):
    sc = await seed_scenario(runtime)
    page = await page_for(runtime, q="NLJ7RT61SV")
    (row,) = page.rows
    assert row.created_local == nairobi(1, 10)
    assert str(row.created_local.utcoffset()) == "3:00:00"
    assert (row.amount_kes, row.client_name, row.therapist_name) == (2500, "Wanjiku Kamau", "Amina Odhiambo")
    assert (row.booking_reference, row.receipt, row.status) == (sc.references["paid"], "NLJ7RT61SV", "PAID")
    assert row.environment == "simulator" and row.failure_reason is None and row.failure_at is None


# Feature: mpesa-payment-integration, Property 42: Failed Payment Logs Error Details
# Feature: mpesa-payment-integration, Property 43: Failed Payment Display Shows Details
async def test_a_failed_attempt_shows_its_reason_and_time(runtime):
    sc = await seed_scenario(runtime)
    rows = {r.id: r for r in (await page_for(runtime, status="failed")).rows}
    row = rows[sc.ids["late_evening"]]
    assert "insufficient" in (row.failure_reason or "") and "ResultCode 1" in (row.failure_reason or "")
    assert row.failure_at == nairobi(1, 23, 31)
    cancelled = (await page_for(runtime, status="CANCELLED")).rows[0]
    assert "1032" in (cancelled.failure_reason or "")


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
async def test_q_finds_by_receipt_checkout_id_reference_name_and_phone_digits(runtime):
    sc = await seed_scenario(runtime)
    paid = {sc.ids["paid"]}
    assert await ids_for(runtime, q="nlj7rt61sv") == paid
    assert await ids_for(runtime, q=sc.checkout_ids["paid"]) == paid
    assert await ids_for(runtime, q=sc.references["paid"].lower()) == paid
    assert await ids_for(runtime, q="wanjiku") == paid
    assert await ids_for(runtime, q="5678") == paid
    assert await ids_for(runtime, q="0712 345 678") == paid
    assert await ids_for(runtime, q="+254712345678") == paid
    assert await ids_for(runtime, q="1222") == {sc.ids["late_evening"], sc.ids["after_midnight"]}
    assert await ids_for(runtime, q="%") == set()  # a LIKE wildcard is searched as text


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
async def test_phone_digits_match_the_whole_suffix_not_only_the_last_four(runtime):
    sc = await seed_scenario(runtime)
    assert await ids_for(runtime, q="45678") == {sc.ids["paid"]}
    assert await ids_for(runtime, q="2345678") == {sc.ids["paid"]}
    assert await ids_for(runtime, q="95678") == set()  # same last four, another fifth digit
    assert await ids_for(runtime, q="11222") == {sc.ids["late_evening"], sc.ids["after_midnight"]}
    assert await ids_for(runtime, q="33111222") == {sc.ids["late_evening"], sc.ids["after_midnight"]}
    assert await ids_for(runtime, q="34111222") == set()


async def query_plan(runtime, query) -> str:
    """The database's plan of ``query`` (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL)."""
    async with runtime.uow() as uow:
        conn = await uow.session.connection()
        dialect = conn.dialect
        compiled = query.compile(dialect=dialect)  # bound parameters, as the service sends it
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        if dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
            return "\n".join(str(r[-1]) for r in rows)
        # An almost empty table is cheapest to scan: forbid that to see which index it can use.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return "\n".join(r[0] for r in await conn.exec_driver_sql(f"EXPLAIN {compiled}", params))


async def test_a_search_by_the_last_phone_digits_seeks_the_last_four_indexes(runtime):
    await seed_scenario(runtime)
    for q in ("5678", "2345678"):
        filt = parse_filter({"q": q}, active_environment="simulator").filter
        plan = await query_plan(runtime, filtered_rows_query(filt))
        assert "ix_payment_attempts_phone_last4" in plan, plan
        assert "ix_payment_attempts_paid_phone_last4" in plan, plan
        assert "ix_payment_attempts_phone)" not in plan and "ix_payment_attempts_phone " not in plan, plan


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
async def test_dates_are_inclusive_nairobi_days(runtime):
    sc = await seed_scenario(runtime)
    # 23:30 on the 1st and 00:10 on the 2nd (Nairobi) are both 20:xx / 21:xx UTC on the 1st.
    first = {sc.ids["paid"], sc.ids["late_evening"]}
    assert await ids_for(runtime, **{"from": "2026-12-01", "to": "2026-12-01"}) == first
    assert await ids_for(runtime, **{"from": "2026-12-02"}) == {sc.ids["after_midnight"], sc.ids["formula"]}
    assert await ids_for(runtime, **{"to": "2026-12-02"}) == first | {sc.ids["after_midnight"]}


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
async def test_practitioner_and_status_filters(runtime):
    sc = await seed_scenario(runtime)
    brian = sc.therapists["brian"]
    assert await ids_for(runtime, therapist=brian) == {sc.ids["late_evening"], sc.ids["after_midnight"]}
    assert await ids_for(runtime, therapist=brian, status="cancelled") == {sc.ids["after_midnight"]}
    assert await ids_for(runtime, status="PAID") == {sc.ids["paid"], sc.ids["formula"]}


async def test_bad_filter_values_give_messages_and_no_rows(runtime):
    await seed_scenario(runtime)
    cases = {
        "after the 'to' date": {"from": "2026-12-05", "to": "2026-12-01"},
        "no practitioner with id 999": {"therapist": "999"},
        "Practitioner must be a whole number": {"therapist": "1; DROP TABLE"},
        "YYYY-MM-DD": {"from": "2026-13-01"},
        "Unknown status": {"status": "RICH"},
        "Unknown environment": {"environment": "live"},
        "last 4 digits": {"q": "12"},
        "Page must be": {"page": "0"},
    }
    for expected, params in cases.items():
        page = await page_for(runtime, **params)
        assert page.rows == () and any(expected in e for e in page.errors), (params, page.errors)


async def test_pages_hold_page_size_rows_newest_first(runtime):
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session)
        await bulk_attempts(uow.session, booking, PAGE_SIZE * 2 + 7, start=nairobi(1, 8))
        await uow.commit()
    first, last = await page_for(runtime), await page_for(runtime, page=3)
    assert (first.total, first.pages, len(first.rows), len(last.rows)) == (107, 3, PAGE_SIZE, 7)
    assert [r.created_at for r in first.rows] == sorted((r.created_at for r in first.rows), reverse=True)
    assert first.has_next and not first.has_previous and last.has_previous and not last.has_next


# Feature: mpesa-payment-integration, Property 40: Report Generation Creates CSV
async def test_the_csv_has_a_header_iso_times_integer_amounts_and_one_row_per_attempt(runtime):
    sc = await seed_scenario(runtime)
    rows = list(csv.reader(io.StringIO(await csv_text(runtime, batch_size=2))))
    assert tuple(rows[0]) == HEADER
    body = {int(r[0]): dict(zip(HEADER, r, strict=True)) for r in rows[1:]}
    assert len(rows) - 1 == len(body) == 4  # the simulator attempts, each once across batches of 2
    paid = body[sc.ids["paid"]]
    assert paid["created_at"] == "2026-12-01T10:00:00+03:00"
    assert (paid["amount_kes"], paid["paid_amount_kes"], paid["mpesa_receipt"]) == (
        "2500",
        "2500",
        "NLJ7RT61SV",
    )
    failed = body[sc.ids["late_evening"]]
    assert failed["failure_at"] == "2026-12-01T23:31:00+03:00" and "insufficient" in failed["failure_reason"]


# Feature: mpesa-payment-integration, Property 40: Report Generation Creates CSV
async def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(runtime):
    sc = await seed_scenario(runtime)
    rows = list(csv.reader(io.StringIO(await csv_text(runtime, q="FRM0000001"))))
    row = dict(zip(HEADER, rows[1], strict=True))
    assert int(row["attempt_id"]) == sc.ids["formula"]
    assert row["client"] == "'" + FORMULA_NAME and row["practitioner"] == "'@Practitioner"


# Feature: mpesa-payment-integration, Property 40: Report Generation Creates CSV
async def test_the_csv_of_100_000_attempts_is_streamed_in_bounded_batches(runtime):
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session)
        await bulk_attempts(uow.session, booking, 100_000, start=nairobi(1, 0))
        await uow.commit()
    selects: list[str] = []

    def count_select(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "payment_attempts" in statement:
            selects.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count_select)
    parsed = parse_filter({}, active_environment="simulator")
    rows = 0
    largest_chunk = 0
    tracemalloc.start()
    try:
        async for chunk in stream_transactions_csv(runtime.uow, parsed.filter, batch_size=1000):
            rows += chunk.count("\r\n")
            largest_chunk = max(largest_chunk, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", count_select)
    assert rows == 100_001  # header + one line per attempt
    # 100 full batches of 1000 (and perhaps an empty one that ends the scan)
    assert len(selects) in (100, 101) and all("LIMIT" in s.upper() for s in selects)
    assert largest_chunk < 200_000  # one batch of text at a time, never the whole file (~10 MB)
    assert peak < 8_000_000, f"peak {peak} bytes: rows are being accumulated"


async def test_the_detail_shows_the_attempt_its_booking_and_every_transition(runtime):
    sc = await seed_scenario(runtime)
    attempt_id = sc.ids["late_evening"]
    async with runtime.uow() as uow:
        for previous, new, reason in (
            ("QUEUED", "AWAITING_CUSTOMER", "push accepted"),
            ("AWAITING_CUSTOMER", "FAILED", "callback ResultCode 1: insufficient funds"),
        ):
            await audit.record_payment_transition(
                uow.session, attempt_id, previous=previous, new=new, reason=reason
            )
        await audit.record(
            uow.session, actor="system", action="other.thing", subject_type="payment", subject_id=999
        )
        await uow.commit()
    async with runtime.uow() as uow:
        detail = await transaction_detail(uow.session, attempt_id)
        assert await transaction_detail(uow.session, 10**9) is None
    assert detail is not None and detail.row.id == attempt_id
    assert detail.booking_status == "APPROVED" and detail.phone_masked == "********1222"
    assert [(t.previous, t.new, t.reason) for t in detail.timeline] == [
        ("QUEUED", "AWAITING_CUSTOMER", "push accepted"),
        ("AWAITING_CUSTOMER", "FAILED", "callback ResultCode 1: insufficient funds"),
    ]
    assert all(t.at_local.utcoffset() is not None for t in detail.timeline)


# Feature: mpesa-payment-integration, Property 82: Testing Provides Transaction Summary
async def test_the_test_summary_counts_outcomes_and_totals_of_test_payments_only(runtime):
    sc = await seed_scenario(runtime)
    params = {"from": "2026-12-01", "to": "2026-12-03"}
    parsed = parse_summary_filter(params, active_environment="simulator", today=date(2026, 12, 4))
    async with runtime.uow() as uow:
        summary = await summarise_test_payments(uow.session, parsed)
        sandbox = await summarise_test_payments(
            uow.session,
            parse_summary_filter(
                {**params, "environment": "sandbox"}, active_environment="production", today=date(2026, 12, 4)
            ),
        )
        refused = await summarise_test_payments(
            uow.session,
            parse_summary_filter(
                {"environment": "production"}, active_environment="production", today=date(2026, 12, 4)
            ),
        )
    assert dict(summary.by_status) == {"PAID": 2, "FAILED": 1, "CANCELLED": 1}
    assert (summary.attempts, summary.paid, summary.paid_kes, summary.success_rate) == (4, 2, 5000, 0.5)
    assert {r.id for r in summary.rows} == {
        sc.ids[n] for n in ("paid", "late_evening", "after_midnight", "formula")
    }
    assert (sandbox.attempts, sandbox.paid_kes) == (1, 2500) and sandbox.filter.environment == "sandbox"
    assert refused.errors and "sandbox and simulator" in refused.errors[0] and refused.rows == ()
    assert sc.ids["production"] not in {r.id for r in summary.rows + sandbox.rows}


async def test_the_test_summary_defaults_to_today_in_the_active_test_environment(runtime):
    await seed_scenario(runtime)
    parsed = parse_summary_filter({}, active_environment="sandbox", today=date(2026, 12, 2))
    assert (parsed.filter.start, parsed.filter.end, parsed.filter.environment) == (
        date(2026, 12, 2),
        date(2026, 12, 2),
        "sandbox",
    )
    async with runtime.uow() as uow:
        summary = await summarise_test_payments(uow.session, parsed)
    assert summary.attempts == 1 and not await _has_admin_reads(runtime)


async def _has_admin_reads(runtime) -> bool:
    async with runtime.uow() as uow:
        return bool(
            await uow.session.scalar(
                AuditEntry.__table__.select().where(AuditEntry.action == "admin.accessed")
            )
        )
