"""Defects the fuzzing of issue 14 found, each kept as the failing case it was.

1. An admin URL whose id segment held a NUL byte, a raw phone number or bytes that are not UTF-8
   made the audited read of the page shown with the refusal raise (audit ``subject_id`` check),
   so ``POST /admin/review/{id}`` answered 500 instead of 404.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry
from tests.support.admin import AdminSite


@pytest.mark.parametrize("segment", ["%00", "254712345678", "%2B254712345678", "%FF%FE", "%ED%A0%80"])
async def test_a_review_decision_on_a_hostile_id_is_a_404_with_the_access_audited_safely(
    admin: AdminSite, segment: str
) -> None:
    answer = await admin.post(f"/admin/review/{segment}", {"action": "dismiss", "note": "x"})
    assert answer.status == 404, await answer.text()
    async with admin.runtime.uow() as uow:
        accessed = select(AuditEntry).where(AuditEntry.action == "admin.accessed")
        entries = (await uow.session.execute(accessed)).scalars().all()
    assert entries, "the queue shown with the refusal is an audited read"
    for entry in entries:
        assert "\x00" not in (entry.subject_id or "")
        assert "254712345678" not in (entry.subject_id or "") + str(entry.details)
