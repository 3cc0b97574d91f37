"""Hostile text in the messages the service SENDS, read back from the stand-ins (issue 14).

A client's name carrying HTML and script, SQL metacharacters, an RTL override, zero-width
characters, 4 096 characters or emoji goes through the real outbox and senders of the whole
application (local mode) to the Telegram stand-in (a practitioner's new-request message, HTML
parse mode), the Africa's Talking stand-in (the same message by SMS) and the SMTP capture (the
approval e-mail, to an address with SQL metacharacters). Each is checked as the recipient sees
it: on Telegram the name is shown literally (escaped in the HTML, so no markup is interpreted),
the SMS is plain text with no HTML entities, the e-mail's HTML part has the name escaped and its
text part has it literally.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from markupsafe import escape

from core.services.notifications.notify import email_client, notify_therapist
from tests.conftest import BACKENDS
from tests.factories import make_client, make_therapist
from tests.integration.test_hostile_text_rendering import HOSTILE, RAW_MARKUP
from tests.support.fuzz import LiveApp, serve_for_module

EMAIL = "o'hara+1=1--drop@example.com"
_numbers = count(1)


@pytest.fixture(scope="module", params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    yield from serve_for_module(request, tmp_path_factory)


def _shown(value: str, size: int = 30) -> str:
    return " ".join(value.split())[:size]


async def _send_all(app: LiveApp, value: str, n: int, user_id: int, phone: str) -> None:
    assert app.runtime is not None
    name = " ".join(value.split())[:120]  # as the service stores a name (core/services/booking/lifecycle.py)
    data = {"reference": f"SSH14{n:05d}", "client_name": name, "session_type": "Individual",
            "starts_at_local": "Mon 7 Dec 2026, 10:00 EAT", "approval_code": f"{n:04d}"}
    async with app.runtime.sessions() as session:
        on_telegram = await make_therapist(session, telegram_user_id=user_id)
        on_sms = await make_therapist(session, phone=phone)
        client = await make_client(session, name=name, email=EMAIL)
        for therapist, key in ((on_telegram, "tg"), (on_sms, "sms")):
            await notify_therapist(session, therapist, template="booking_requested_therapist", data=data,
                                   dedupe_key=f"h14-{key}-{n}")
        await email_client(session, client, email=EMAIL, template="booking_approved_email",
                           dedupe_key=f"h14-em-{n}",
                           data={**data, "therapist_name": name, "amount_kes": 2500})
        await session.commit()
    app.runtime.wake("outbox")


def _poll(app: LiveApp, path: str, pick: Any, within_s: float = 15.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = pick(json.loads(app.get(path).text))
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing arrived at {path}: {app.run(_outbox(app))}")


async def _outbox(app: LiveApp) -> list[tuple[Any, ...]]:
    from sqlalchemy import select

    from core.db.models import Outbox

    assert app.runtime is not None
    async with app.runtime.sessions() as session:
        rows = (await session.execute(select(Outbox))).scalars().all()
    return [(r.channel, r.recipient[-4:], r.status, r.last_error) for r in rows]


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_names_reach_telegram_sms_and_email_escaped_for_each(app: LiveApp, value: str) -> None:
    n = next(_numbers)
    user_id, phone = 7_140_000 + n, f"25471414{n:04d}"
    app.post("/sim/telegram/driver/users", _json({"id": user_id, "first_name": value[:64], "started": True}))
    app.run(_send_all(app, value, n, user_id, phone))

    telegram = _poll(app, f"/sim/telegram/driver/chats/{user_id}/messages",
                     lambda body: [m for m in body["messages"] if m["from_bot"]])[0]
    assert telegram["parse_mode"] == "HTML"
    # shown literally: the name's markup was escaped, not parsed
    assert _shown(value) in telegram["text"], telegram["text"]

    sms = _poll(app, "/sim/at/messages.json",
                lambda rows: [m for m in rows if phone[-9:] in json.dumps(m)])[0]
    sms_text = json.dumps(sms, ensure_ascii=False)
    for entity in ("&lt;", "&gt;", "&amp;", "&#"):
        assert entity not in sms_text, sms_text
    if value.isascii():
        assert _shown(value, 16) in sms["message"], sms["message"]  # the SMS shortens names

    mail = _poll(app, "/sim/mail/messages.json",
                 lambda rows: [m for m in rows if f"SSH14{n:05d}" in (m["text"] or "")])[0]
    assert EMAIL in " ".join(mail["to"])
    assert str(escape(_shown(value))) in mail["html"], mail["html"][:2000]
    for markup in RAW_MARKUP:
        assert markup not in mail["html"]
    assert _shown(value) in mail["text"]


def _json(body: dict[str, Any]) -> Any:
    from tests.support.fuzz import Body

    return Body(json.dumps(body).encode(), "application/json", "driver")
