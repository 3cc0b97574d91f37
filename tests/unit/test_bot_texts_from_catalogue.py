"""The Telegram adapter (bot/) shows only catalogue texts, so a translation can be added as data."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.app import CLIENT_COMMANDS, THERAPIST_COMMANDS, command_menu
from bot.progress import result_text
from bot.render import escape
from core.dialog import messages
from core.domain.states import PaymentStatus
from tests.support.telegram import payment_view

BOT_DIR = Path(__file__).resolve().parents[2] / "bot"

# Text that never reaches a user: log lines, operator errors, and outbox delivery reasons.
_LOGGERS = frozenset({"log", "logger", "logging"})
_DELIVERY_REASONS = frozenset({"SendResult"})


def looks_like_a_sentence(text: str) -> bool:
    """Two or more words and a capital first letter: "Book a session", "⏳ Contacting M-Pesa…".

    Log messages start in lower case; callback data ("v1:pay:"), tags ("payment_progress:"),
    patterns and parse modes ("HTML") are not several space-separated words.
    """
    words = [token for token in text.split() if any(c.isalpha() for c in token)]
    first_letter = next((c for c in text if c.isalpha()), "")
    return len(words) >= 2 and first_letter.isupper()


def _not_for_users(node: ast.AST) -> bool:
    """A subtree whose strings are for operators: ``raise``, ``log.info(...)``, ``SendResult.retry(...)``."""
    if isinstance(node, ast.Raise):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        return isinstance(owner, ast.Name) and owner.id in _LOGGERS | _DELIVERY_REASONS
    return False


def _docstring(node: ast.AST) -> ast.AST | None:
    body = getattr(node, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
        value = body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value
    return None


def _strings_in(node: ast.AST, *, skip_operator_text: bool = False) -> list[tuple[ast.AST, str]]:
    """String literals under ``node``; an f-string's literal parts count once, joined."""
    if skip_operator_text and _not_for_users(node):
        return []
    if isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        inside = [
            found
            for v in node.values
            if isinstance(v, ast.FormattedValue)
            for found in _strings_in(v.value, skip_operator_text=skip_operator_text)
        ]
        return [(node, "{}".join(parts)), *inside]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [(node, node.value)]
    docstring = _docstring(node)
    return [
        found
        for child in ast.iter_child_nodes(node)
        if child is not docstring and not (isinstance(child, ast.Expr) and child.value is docstring)
        for found in _strings_in(child, skip_operator_text=skip_operator_text)
    ]


def literal_sentences(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: text`` for each sentence-like literal a user could see (not docstrings, logs, errors)."""
    return [
        f"{filename}:{literal.lineno}: {text!r}"  # type: ignore[attr-defined]
        for literal, text in _strings_in(ast.parse(source, filename), skip_operator_text=True)
        if looks_like_a_sentence(text)
    ]


def _bot_sources() -> list[Path]:
    files = sorted(BOT_DIR.glob("*.py"))
    assert len(files) >= 5, "bot/ not found"
    return files


def test_no_sentence_in_bot_is_a_literal_every_one_comes_from_the_catalogue():
    offenders = [
        hit for path in _bot_sources() for hit in literal_sentences(path.read_text(), f"bot/{path.name}")
    ]
    assert offenders == [], "move these texts to core/dialog/messages.py:\n" + "\n".join(offenders)


def test_the_literal_scan_catches_replies_buttons_constants_and_f_strings():
    source = """
TEXT_ONLY = "I can only read text messages."
COMMANDS: tuple = (("book", "Book a session"),)


async def refuse(self, chat_id):
    await self._say(chat_id, "Sorry, that did not work.")


def result(amount):
    what = "Contacting M-Pesa"
    button = InlineKeyboardButton("Retry payment", callback_data="v1:pay:3")
    return f"✅ Payment received: {amount}.", what, button
"""
    hits = literal_sentences(source, "x.py")
    assert [hit.split(": ", 1)[1] for hit in hits] == [
        "'I can only read text messages.'",
        "'Book a session'",
        "'Sorry, that did not work.'",
        "'Contacting M-Pesa'",
        "'Retry payment'",
        "'✅ Payment received: {}.'",
    ]


def test_the_literal_scan_leaves_docstrings_logs_errors_callback_data_and_parse_modes_alone():
    source = '''
"""Module docstring: Sentences here are for developers."""
PROGRESS_TAG = "payment_progress:"
ALLOWED_UPDATES = ["message", "callback_query"]
_UNREACHABLE_HINTS = ("chat not found", "bot was blocked")
PHONE_PLACEHOLDER = "0712 345 678"
_COMMAND_AT = re.compile(r"^(/[A-Za-z0-9_]+)@[A-Za-z0-9_]+")


async def send(bot, chat_id, html, booking_id):
    """Send one message. Returns None when Telegram refused it."""
    log.info("Telegram bot started", extra={"mode": "polling"})
    await bot.send_message(chat_id, html, parse_mode="HTML")
    button = InlineKeyboardButton(label("retry"), callback_data=f"v1:pay:{booking_id}")
    if not html:
        raise BotStartError("TELEGRAM_BOT_TOKEN: not set (the bot cannot start)")
    await self._say(chat_id, say("tg_text_only"))
    return SendResult.retry(f"Telegram unreachable: {booking_id}"), button
'''
    assert literal_sentences(source) == []


def _catalogue_keys_used_in_bot() -> set[str]:
    """Literal catalogue keys in bot/: ``say("key")`` and table values like ``"tg_progress_queued"``."""
    keys: set[str] = set()
    for path in _bot_sources():
        for literal, text in _strings_in(ast.parse(path.read_text())):
            if isinstance(literal, ast.Constant) and (text.startswith("tg_") or text == "error"):
                keys.add(text)
    return keys


def test_every_catalogue_key_the_bot_asks_for_exists():
    used = _catalogue_keys_used_in_bot()
    assert {"tg_text_only", "tg_progress_overdue", "error"} <= used
    assert sorted(used - messages.EN.keys()) == []


def test_every_telegram_only_catalogue_text_is_used_by_the_bot():
    used = _catalogue_keys_used_in_bot() | {
        f"tg_command_{c}" for c in (*CLIENT_COMMANDS, *THERAPIST_COMMANDS)
    }
    unused = sorted(key for key in messages.EN if key.startswith("tg_") and key not in used)
    assert unused == []


def test_each_command_in_the_menu_is_described_by_the_catalogue():
    menu = command_menu((*CLIENT_COMMANDS, *THERAPIST_COMMANDS))
    assert [(c.command, c.description) for c in menu][:2] == [
        ("start", "Start, or go back to the main menu"),
        ("book", "Book a session"),
    ]
    assert all(c.description == messages.say(f"tg_command_{c.command}") for c in menu)


def test_the_progress_texts_are_read_from_the_catalogue_each_time_they_are_shown(monkeypatch):
    monkeypatch.setitem(messages.EN, "tg_progress_needs_review", "⚠️ Tunakagua malipo haya.")
    text, _ = result_text(payment_view(status=PaymentStatus.NEEDS_REVIEW, test_mode=False))
    assert text == "⚠️ Tunakagua malipo haya."


def test_a_failure_reason_with_html_and_braces_is_filled_in_literally_and_escaped_once():
    view = payment_view(
        status=PaymentStatus.FAILED, client_message="Tom & <b>{x}</b> failed.", test_mode=False
    )
    text, _ = result_text(view)
    assert text == "❌ Tom & <b>{x}</b> failed."
    assert escape(text) == "❌ Tom &amp; &lt;b&gt;{x}&lt;/b&gt; failed."
