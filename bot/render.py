"""Turning the engine's channel-neutral replies into Telegram messages (no I/O here).

The engine's text is plain; every piece of it is HTML-escaped here and sent with
``parse_mode=HTML``, so a name like ``<b>x</b>`` reaches the user literally. Options
become inline buttons whose ``callback_data`` is the option value unchanged (``v1:…``,
at most 64 bytes, checked by :class:`core.dialog.types.Option`); ``ask_phone`` becomes a
reply keyboard with a "Share my phone number" (request_contact) button plus the
suggested numbers; ``remove_keyboard`` a ``ReplyKeyboardRemove``. The few sentences this
adapter adds itself (the typing note, "Choose an option:") come from the message catalogue
(``tg_*`` keys in :mod:`core.dialog.messages`) in the reply's language (``Reply.lang``) as
plain text and are escaped here like the rest. Whether the phone step needs the "you can
also type the number" note is read from the reply's structure, never from its words: a reply
whose own text already says so carries ``says_typing``, and a reply with inline options gets
the "or share another number" message instead.

The phone keyboard belongs to the phone step alone: :func:`clear_reply_keyboard` makes
every engine turn that does not ask for a phone remove it, whatever the engine knows
about the step the user was at (e.g. a phone step that expired while the keyboard stayed).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, replace

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from core.dialog.messages import DEFAULT_LANGUAGE, label, say
from core.dialog.types import Option, Reply

PHONE_PLACEHOLDER = "0712 345 678"  # an example number in the input field, the same in every language
MAX_MESSAGE_CHARS = 4096
SPLIT_AT = 4000  # room to spare under Telegram's 4096
PROGRESS_TAG = "payment_progress:"

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


@dataclass(frozen=True)
class Outgoing:
    """One Telegram message to send (or the pressed message to edit, when ``edit``)."""

    html: str
    markup: Markup | None = None
    edit: bool = False
    tag: str | None = None
    plain: str = ""  # the plain text behind ``html`` (what the user reads)
    options: tuple[Option, ...] = ()


def escape(text: str) -> str:
    """Plain text → Telegram HTML (``<``, ``>``, ``&`` and quotes escaped)."""
    return html.escape(text, quote=True)


def inline_keyboard(options: tuple[Option, ...] | list[Option]) -> InlineKeyboardMarkup | None:
    """Options as inline buttons, packed by label length (3, 2 or 1 per row)."""
    if not options:
        return None
    longest = max(len(o.label) for o in options)
    width = 3 if longest <= 8 else 2 if longest <= 18 else 1
    buttons = [InlineKeyboardButton(o.label, callback_data=o.value) for o in options]
    return InlineKeyboardMarkup([buttons[i : i + width] for i in range(0, len(buttons), width)])


def phone_keyboard(
    suggestions: tuple[str, ...] | list[str] = (), lang: str = DEFAULT_LANGUAGE
) -> ReplyKeyboardMarkup:
    """The phone step: share-contact button first, then each suggested number as a one-tap choice."""
    rows = [[KeyboardButton(label("share_phone", lang), request_contact=True)]]
    rows += [[KeyboardButton(number)] for number in suggestions]
    return ReplyKeyboardMarkup(
        rows, resize_keyboard=True, one_time_keyboard=True, input_field_placeholder=PHONE_PLACEHOLDER
    )


def split_text(text: str, limit: int = SPLIT_AT) -> list[str]:
    """Split plain text into pieces of at most ``limit`` characters, at line breaks when possible."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= 0:
            cut = rest.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n")
    if rest.strip():
        pieces.append(rest)
    return pieces


def render_reply(reply: Reply, *, can_edit: bool) -> list[Outgoing]:
    """The Telegram messages for one Reply, in sending order.

    ``can_edit``: the inbound was a button press on a message we may edit. A reply
    keyboard (ask_phone, remove_keyboard) can only come with a new message, so those
    replies are sent, never edited; options that cannot share that message follow in a
    second message.
    """
    options = tuple(reply.options)
    inline = inline_keyboard(options)
    pieces = split_text(reply.text or " ")
    out = [Outgoing(escape(p), plain=p) for p in pieces[:-1]]  # long text: leading pieces plain
    last = pieces[-1]
    lang = reply.lang
    if reply.ask_phone:
        needs_note = not options and not reply.says_typing
        note = f"{last}\n\n{say('tg_type_number_note', lang=lang)}" if needs_note else last
        if options:
            out.append(
                Outgoing(
                    escape(note),
                    inline,
                    edit=reply.edit_previous and can_edit and len(pieces) == 1,
                    tag=reply.tag,
                    plain=note,
                    options=options,
                )
            )
            share_other = say("tg_share_other", lang=lang)
            keyboard = phone_keyboard(reply.phone_suggestions, lang)
            out.append(Outgoing(escape(share_other), keyboard, plain=share_other))
        else:
            keyboard = phone_keyboard(reply.phone_suggestions, lang)
            out.append(Outgoing(escape(note), keyboard, tag=reply.tag, plain=note))
        return out
    if reply.remove_keyboard:
        out.append(Outgoing(escape(last), ReplyKeyboardRemove(), tag=reply.tag, plain=last))
        if inline:
            more = say("tg_more_options", lang=lang)
            out.append(Outgoing(escape(more), inline, plain=more, options=options))
        return out
    edit = reply.edit_previous and can_edit and len(pieces) == 1
    out.append(Outgoing(escape(last), inline, edit=edit, tag=reply.tag, plain=last, options=options))
    return out


def clear_reply_keyboard(replies: Sequence[Reply], *, can_edit: bool) -> list[Reply]:
    """One engine turn's replies, the first new plain one removing any reply keyboard.

    Nothing changes when the turn asks for a phone (the keyboard is wanted) or already
    removes it. Only a reply sent as a new message without buttons can carry the removal:
    an edit cannot, and a message with inline buttons has no room for it. Removing a
    keyboard that is not shown does nothing on Telegram.
    """
    out = list(replies)
    if any(r.ask_phone or r.remove_keyboard for r in out):
        return out
    for i, reply in enumerate(out):
        if not reply.options and not (reply.edit_previous and can_edit):
            out[i] = replace(reply, remove_keyboard=True)
            break
    return out


def progress_attempt_id(tag: str | None) -> int | None:
    """The attempt id of a "payment_progress:<id>" tag, else None."""
    if not tag or not tag.startswith(PROGRESS_TAG):
        return None
    value = tag.removeprefix(PROGRESS_TAG)
    return int(value) if value.isdigit() else None
