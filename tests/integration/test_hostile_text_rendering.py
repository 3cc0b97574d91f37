"""Attacker-controlled text is stored as it came and shown escaped on the admin pages (issue 14).

Statement CSV cells are checked on the reconciliation page the same way.

A client's name and e-mail address, a practitioner's name and a review reason carrying HTML and
script, SQL metacharacters, an RTL override, zero-width characters, 4 096 characters and emoji
are stored through the ORM and the pages are RENDERED by the admin site: each value must appear
HTML-escaped (as Jinja's autoescape writes it) and none of its markup may reach the page raw.
"""

from __future__ import annotations

import pytest
from markupsafe import escape
from sqlalchemy import select

from core.db.models import Client
from core.domain.states import PaymentStatus
from tests.factories import make_attempt, make_booking, make_client, make_therapist
from tests.support.admin import AdminSite

HOSTILE = {
    "script": '<script>alert("x")</script><img src=x onerror=alert(1)>',
    "sql": "Robert'); DROP TABLE clients;-- \" OR 1=1 --",
    "rtl override": "Amina \u202egnp.exe\u202c Odhiambo",
    "zero width": "Wan\u200bji\u200dku\ufeff <b>Kamau</b>",
    "4096 chars": "<i>" + "x" * 4090 + "</i>",
    "emoji": "😀👩🏽‍⚕️🇰🇪 <svg onload=alert(1)>",
}
RAW_MARKUP = ("<script>alert", "<img src=x", "<b>Kamau", "<svg onload", "<i>xxx")


def _assert_escaped(page: str, value: str, where: str) -> None:
    shown = str(escape(" ".join(value.split())))
    assert shown[:100] in page, f"{where}: the value is not shown escaped"
    for markup in RAW_MARKUP:
        assert markup not in page, f"{where}: raw markup {markup!r} reached the page"


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_hostile_client_and_practitioner_text_is_stored_as_sent_and_rendered_escaped(
    admin: AdminSite, value: str
) -> None:
    name = " ".join(value.split())[:120]
    async with admin.runtime.sessions() as session:
        client = await make_client(session, name=name, email=value[:254])
        therapist = await make_therapist(session, name=name)
        booking = await make_booking(session, client=client, therapist=therapist)
        attempt = await make_attempt(session, booking, status=PaymentStatus.NEEDS_REVIEW,
                                     review_reason=value[:300], result_desc=value[:300])
        await session.commit()
    async with admin.runtime.sessions() as session:
        stored = (await session.execute(select(Client).where(Client.id == client.id))).scalar_one()
    assert (stored.name, stored.email) == (name, value[:254])  # stored exactly, nothing executed

    pages = {
        "clients": "/admin/clients",
        "transactions": "/admin/transactions",
        "transaction detail": f"/admin/transactions/{attempt.id}",
        "review": "/admin/review",
    }
    for where, path in pages.items():
        answer = await admin.get(path)
        assert answer.status == 200, (where, await answer.text())
        page = await answer.text()
        _assert_escaped(page, name, where)
        if where == "clients":
            _assert_escaped(page, value[:254], "clients (e-mail)")


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_hostile_statement_cells_are_shown_escaped_on_the_reconciliation_page(
    admin: AdminSite, value: str
) -> None:
    import csv
    import io

    from tests.integration.test_admin_reconciliation import statement, upload

    cells = io.StringIO()
    writer = csv.writer(cells, lineterminator="")
    writer.writerow(["SCCSTRANGE", "2024-03-14 09:00:00", "2024-03-14 09:00:00", value, "Completed",
                     "1,000.00", "", ""])
    bad_receipt = io.StringIO()
    csv.writer(bad_receipt, lineterminator="").writerow(
        [value[:200], "2024-03-14 09:00:00", "2024-03-14 09:00:00", "Pay Bill Online", "Completed", "1.00",
         "", ""])
    pages = []
    for data in (statement(cells.getvalue()), statement(bad_receipt.getvalue())):
        answer = await upload(admin, data, admin.csrf)
        page = await answer.text()
        assert answer.status in (200, 400), page
        for markup in RAW_MARKUP:
            assert markup not in page, f"raw markup {markup!r} from a statement cell reached the page"
        pages.append(page)
    # the refused receipt is named in the message (upper-cased, shortened): escaped
    assert str(escape(value.strip().upper()[:12])) in pages[1], "the refused receipt is not shown escaped"
