"""Replies as SMS: plain text with numbered choices, numbered the same way the engine reads them.

One turn's replies become one SMS body. Every option of every reply, then every phone
suggestion, gets the next number ("1 Skip"); the engine keeps the same list in the
conversation state, so a bare "2" picks the second. Bodies are GSM-7 and discreet
(:func:`core.templates.gsm.sms_safe`); they go out through the outbox with the
pass-through template ``chat_reply`` (data ``{"text": ...}``).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.dialog import messages
from core.dialog.types import Reply
from core.templates import TEMPLATES, TemplateSpec
from core.templates.gsm import sms_safe

CHAT_REPLY_TEMPLATE = "chat_reply"
TEL = "tel:"  # marks a phone suggestion among the numbered choices

CHAT_REPLY_SPEC = TemplateSpec(
    frozenset({"sms"}),
    ("text",),
    multipart_sms=True,
    description="a conversation reply (SMS channel): the text as the dialog engine wrote it",
)


def ensure_chat_reply_template() -> None:
    """Register ``chat_reply`` (core/templates/sms/chat_reply.txt) unless the registry lists it.

    The outbox checks every template against :data:`core.templates.TEMPLATES`, and so does
    the dispatcher when it renders; ``setup_sms_routes`` calls this at start-up, in every
    process that serves the SMS webhook. (The entry belongs in the registry itself; until it
    is there, this keeps the SMS conversation working.)
    """
    TEMPLATES.setdefault(CHAT_REPLY_TEMPLATE, CHAT_REPLY_SPEC)


def numbered_choices(replies: Sequence[Reply]) -> list[tuple[str, str]]:
    """``(value, label)`` of every numbered choice in ``replies``, in display order."""
    items: list[tuple[str, str]] = []
    for reply in replies:
        items.extend((option.value, option.label) for option in reply.options)
        items.extend((TEL + phone, phone) for phone in reply.phone_suggestions)
    return items


def render_sms(replies: Sequence[Reply], lang: str | None = None) -> str:
    """The SMS body for one turn: texts, numbered choices, and a "Reply 1-N" hint (in ``lang``,
    else in the language the engine wrote the replies in)."""
    lang = lang or (replies[0].lang if replies else messages.DEFAULT_LANGUAGE)
    lines: list[str] = []
    number = 0
    for reply in replies:
        if reply.text.strip():
            lines.append(reply.text.strip())
        for label in [o.label for o in reply.options] + list(reply.phone_suggestions):
            number += 1
            lines.append(f"{number} {label}")
    if number == 1:
        lines.append(messages.say("reply_one", "sms", lang))
    elif number > 1:
        lines.append(messages.say("reply_range", "sms", lang, last=number))
    return sms_safe("\n".join(lines))
