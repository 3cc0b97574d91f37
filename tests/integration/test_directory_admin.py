"""The admin site's changes to practitioners: add, deactivate/reactivate, weekly hours, link code."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.db.models import AuditEntry, Therapist
from core.runtime import Runtime
from core.services.audit import verify_chain
from core.services.booking import directory
from core.services.booking.directory import DirectoryError
from core.services.booking.lifecycle import BookingError, link_therapist_telegram
from core.services.booking.queries import bookable_therapists


async def _counts(runtime: Runtime) -> tuple[int, int]:
    async with runtime.uow() as uow:
        therapists = await uow.session.scalar(select(func.count(Therapist.id)))
        entries = await uow.session.scalar(select(func.count(AuditEntry.id)))
        return int(therapists or 0), int(entries or 0)


async def _actions(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    async with runtime.uow() as uow:
        rows = (await uow.session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars().all()
        return [(e.actor, e.action, e.subject_id) for e in rows]


async def _add(runtime: Runtime, **fields: str) -> directory.TherapistView:
    values = {"name": "Dr. Neema Achieng", "email": "neema@example.org", "phone": "0712 345 678", "hours": ""}
    values.update(fields)
    return await directory.add_practitioner(runtime.uow(), actor="admin:1", **values)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "N", "a name must be 2 to 120 characters"),
        ("email", "neema-at-example", "is not an e-mail address"),
        ("phone", "12345", "not a Kenyan mobile number"),
        ("hours", "mon-fri 17:00-09:00", "the end must be after the start"),
        ("hours", "someday 09:00-17:00", "cannot read"),
        ("name", "Ne\x00ema", "cannot contain control characters"),
        ("email", "neema\x00@example.org", "not an e-mail address"),
        ("hours", "mon 09:00-17:00\x00", "cannot read"),
    ],
)
async def test_adding_a_practitioner_with_bad_input_says_why_and_adds_nothing(
    runtime: Runtime, field: str, value: str, message: str
) -> None:
    with pytest.raises(DirectoryError, match=message):
        await _add(runtime, **{field: value})
    assert await _counts(runtime) == (0, 0)


async def test_a_second_practitioner_with_the_same_email_is_refused(runtime: Runtime) -> None:
    await _add(runtime)
    with pytest.raises(DirectoryError, match="already exists"):
        await _add(runtime, name="Someone Else", phone="0712000999")
    assert await _counts(runtime) == (1, 1)


async def test_an_added_practitioner_is_offered_with_default_hours_a_link_code_and_an_audit_entry(
    runtime: Runtime,
) -> None:
    added = await _add(runtime)
    assert (added.phone, added.phone_masked) == ("254712345678", "********5678")
    weekdays = ("mon", "tue", "wed", "thu", "fri")
    assert added.hours_summary == "; ".join(f"{day} 09:00-17:00" for day in weekdays)
    assert added.active and added.telegram_link_code and added.telegram_user_id is None
    assert [t.id for t in await bookable_therapists(runtime)] == [added.id]
    assert await _actions(runtime) == [("admin:1", "therapist.added", str(added.id))]


async def test_a_deactivated_practitioner_is_no_longer_offered_until_reactivated(runtime: Runtime) -> None:
    kept = await _add(runtime, name="Amani", email="amani@example.org")
    leaving = await _add(runtime)
    off = await directory.set_practitioner_active(runtime.uow(), leaving.id, active=False, actor="admin:2")
    assert not off.active
    assert [t.id for t in await bookable_therapists(runtime)] == [kept.id]
    with pytest.raises(DirectoryError, match="is already inactive"):
        await directory.set_practitioner_active(runtime.uow(), leaving.id, active=False, actor="admin:2")
    await directory.set_practitioner_active(runtime.uow(), leaving.id, active=True, actor="admin:2")
    assert {t.id for t in await bookable_therapists(runtime)} == {kept.id, leaving.id}
    actions = [action for _, action, _ in await _actions(runtime)]
    assert actions[-2:] == ["therapist.deactivated", "therapist.reactivated"]
    with pytest.raises(DirectoryError, match="there is no practitioner 999"):
        await directory.set_practitioner_active(runtime.uow(), 999, active=False, actor="admin:2")
    assert (await verify_chain(runtime.uow())).ok


async def test_weekly_hours_are_replaced_only_by_valid_hours(runtime: Runtime) -> None:
    added = await _add(runtime)
    for bad in ("", "mon 09:00-25:00", "mon-fri 9-5", "fri-mon 09:00-12:00"):
        with pytest.raises(DirectoryError):
            await directory.set_weekly_hours(runtime.uow(), added.id, hours=bad, actor="admin:1")
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Therapist, added.id)).weekly_hours == added.weekly_hours
    changed = await directory.set_weekly_hours(
        runtime.uow(), added.id, hours="Sat 10:00-13:00; mon-tue 08:00-12:00", actor="admin:1"
    )
    morning = [["08:00", "12:00"]]
    assert changed.weekly_hours == {"sat": [["10:00", "13:00"]], "mon": morning, "tue": morning}
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Therapist, added.id)).weekly_hours == changed.weekly_hours
        changes = select(AuditEntry).where(AuditEntry.action == "therapist.hours_changed")
        entry = await uow.session.scalar(changes)
        assert entry is not None and entry.details == {"hours": changed.hours_summary}


async def test_a_new_link_code_replaces_the_old_one_and_is_not_written_to_the_audit_trail(
    runtime: Runtime,
) -> None:
    added = await _add(runtime)
    renewed = await directory.regenerate_link_code(runtime.uow(), added.id, actor="admin:1")
    assert renewed.telegram_link_code and renewed.telegram_link_code != added.telegram_link_code
    with pytest.raises(BookingError):
        await link_therapist_telegram(runtime, added.telegram_link_code or "", 777001)
    linked = await link_therapist_telegram(runtime, renewed.telegram_link_code, 777001)
    assert linked.id == added.id
    async with runtime.uow() as uow:
        details = (await uow.session.scalars(select(AuditEntry.details))).all()
    assert all(renewed.telegram_link_code not in str(d) for d in details)
