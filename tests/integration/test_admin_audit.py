"""The audit pages: browse with filters and paging, verify the hash chain (naming the first broken
entry), and the streamed JSONL export with hashes (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from core.db.models import AuditEntry
from core.services import audit
from core.services.audit.browse import PAGE_SIZE
from tests.support.admin import AdminSite

DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 12:00 in Nairobi


async def seed(admin: AdminSite, count: int = 6) -> None:
    """Entries by two actors, two actions, on consecutive Nairobi days (after the login entry)."""
    async with admin.runtime.uow() as uow:
        for i in range(count):
            await audit.record(
                uow.session,
                actor="system" if i % 2 else "client:7",
                action="payment.status_changed" if i % 3 else "booking.created",
                subject_type="payment",
                subject_id=100 + i,
                details={"n": i},
                at=DAY + timedelta(days=i),
            )
        await uow.commit()


def seqs(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="seq-(\d+)">', page)]


async def test_the_trail_is_browsed_newest_first_and_filtered(admin: AdminSite) -> None:
    await seed(admin)
    everything = await (await admin.get("/admin/audit")).text()
    assert seqs(everything)[:3] == sorted(seqs(everything), reverse=True)[:3]
    assert "booking.created" in everything and "client:7" in everything

    by_action = await (await admin.get("/admin/audit?action=booking.created")).text()
    assert len(seqs(by_action)) == 2 and "payment.status_changed</td>" not in by_action
    by_actor = await (await admin.get("/admin/audit?actor=client:7")).text()
    assert len(seqs(by_actor)) == 3
    # Days are Africa/Nairobi days, both ends included: 3, 4 and 5 March.
    by_days = await (await admin.get("/admin/audit?from=2026-03-03&to=2026-03-05&actor=system")).text()
    assert len(seqs(by_days)) == 2


async def test_bad_filters_get_a_clear_message_not_an_error(admin: AdminSite) -> None:
    for query, message in [
        ("from=2026-03-05&to=2026-03-01", "after the"),
        ("from=yesterday", "YYYY-MM-DD"),
        ("actor=<script>", "Actor must look like"),
        ("action=DROP TABLE", "Action must look like"),
        ("before=-3", "entry number"),
    ]:
        response = await admin.get(f"/admin/audit?{query}")
        assert response.status == 400, query
        assert message in await response.text()


async def test_the_trail_is_paged(admin: AdminSite) -> None:
    await seed(admin, PAGE_SIZE + 5)
    first = await (await admin.get("/admin/audit")).text()
    assert len(seqs(first)) == PAGE_SIZE and 'rel="next"' in first
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older is not None
    second = await (await admin.get(older.group(1).replace("&amp;", "&"))).text()
    assert 'rel="first"' in second and 'rel="next"' not in second
    # Reading appends to the trail; the pages still neither overlap nor skip an entry.
    assert seqs(first) + seqs(second) == list(range(max(seqs(first)), 0, -1))


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_verify_says_ok_and_then_names_the_first_tampered_entry(admin: AdminSite) -> None:
    await seed(admin)
    response = await admin.post("/admin/audit/verify")
    assert response.status == 303 and response.headers["Location"] == "/admin/audit"
    assert "Audit chain OK" in await (await admin.get("/admin/audit")).text()

    async with admin.runtime.uow() as uow:  # someone edits an entry behind the application's back
        target = await uow.session.scalar(select(AuditEntry.seq).where(AuditEntry.subject_id == "103"))
        await uow.session.execute(
            update(AuditEntry).where(AuditEntry.seq == target).values(details={"n": 99})
        )
        await uow.commit()
    await admin.post("/admin/audit/verify")
    page = await (await admin.get("/admin/audit")).text()
    assert f"Audit chain BROKEN at entry #{target}" in page and "hash mismatch" in page
    async with admin.runtime.uow() as uow:
        checks = (
            await uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.verified"))
        ).all()
    assert [c.details["ok"] for c in checks] == [True, False]
    assert checks[-1].details["first_broken_seq"] == target and checks[-1].actor == f"admin:{admin.admin_id}"


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_the_jsonl_export_streams_every_entry_with_its_hashes(admin: AdminSite) -> None:
    await seed(admin)
    response = await admin.get("/admin/audit.jsonl")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers.get("Content-Length") is None  # streamed, not built in memory
    lines = (await response.text()).splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert all(len(e["hash"]) == 64 and len(e["prev_hash"]) == 64 for e in entries)
    assert audit.verify_jsonl(lines).ok
    # The export's own read is the last entry in it: the file shows who took it.
    assert (
        entries[-1]["action"] == "admin.accessed" and entries[-1]["details"]["what"] == "/admin/audit.jsonl"
    )


# Feature: mpesa-payment-integration, Property 69: Admin Access Logs Required Fields
async def test_every_audit_page_read_is_itself_audited(admin: AdminSite) -> None:
    await admin.get("/admin/audit?action=booking.created")
    await admin.get("/admin/audit.jsonl")
    async with admin.runtime.uow() as uow:
        reads = (
            await uow.session.scalars(
                select(AuditEntry).where(AuditEntry.action == "admin.accessed").order_by(AuditEntry.seq)
            )
        ).all()
    assert [(r.details["what"], r.actor) for r in reads] == [
        ("/admin/audit", f"admin:{admin.admin_id}"),
        ("/admin/audit.jsonl", f"admin:{admin.admin_id}"),
    ]
    assert reads[0].details["filters"] == {"action": "booking.created", "before": None}
