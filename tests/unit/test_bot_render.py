"""Rendering engine replies as Telegram messages, and the progress texts (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram import InlineKeyboardMarkup, ReplyKeyboardMarkup, ReplyKeyboardRemove

from bot.handlers import command_text
from bot.progress import PaymentProgress, mode_marker, result_text, waiting_line
from bot.render import (
    clear_reply_keyboard,
    escape,
    inline_keyboard,
    progress_attempt_id,
    render_reply,
    split_text,
)
from core.dialog.messages import label, say
from core.dialog.types import Option, Reply
from core.domain.states import PaymentStatus
from simulators.telegram_api import parse_html
from tests.support.telegram import payment_view


def _rows(markup: InlineKeyboardMarkup | None) -> list[list[tuple[str, str]]]:
    assert markup is not None
    return [[(b.text, str(b.callback_data)) for b in row] for row in markup.inline_keyboard]


def test_plain_text_is_escaped_for_telegram_html():
    assert escape("<b>x</b> & \"q\" 's'") == "&lt;b&gt;x&lt;/b&gt; &amp; &quot;q&quot; &#x27;s&#x27;"


@given(st.text(max_size=200))
def test_any_engine_text_reads_back_exactly_after_telegrams_html_parsing(text):
    plain, entities = parse_html(escape(text))
    assert plain == text
    assert entities == []


def test_options_keep_the_engines_labels_and_values_and_short_labels_share_a_row():
    markup = inline_keyboard([Option("Approve", "v1:approve:12"), Option("Decline", "v1:decline:12")])
    assert _rows(markup) == [[("Approve", "v1:approve:12"), ("Decline", "v1:decline:12")]]


def test_many_short_options_pack_three_to_a_row_and_long_ones_one_to_a_row():
    times = [Option(f"{h:02d}:00", f"v1:tm:k3Qz:{h}") for h in range(9, 16)]
    assert [len(r) for r in _rows(inline_keyboard(times))] == [3, 3, 1]
    long = [
        Option("Individual · 50 min · KES 2,500", "v1:st:a:1"),
        Option("Couples · 80 min · KES 4,000", "v1:st:a:2"),
    ]
    assert [len(r) for r in _rows(inline_keyboard(long))] == [1, 1]


def test_no_options_means_no_keyboard():
    assert inline_keyboard([]) is None
    [out] = render_reply(Reply("Hello"), can_edit=False)
    assert out.markup is None and out.html == "Hello"


def test_ask_phone_is_a_reply_keyboard_with_share_contact_first_then_the_suggestions():
    [out] = render_reply(
        Reply("Which number?", ask_phone=True, phone_suggestions=("254708374149",)), can_edit=True
    )
    assert isinstance(out.markup, ReplyKeyboardMarkup)
    rows = out.markup.keyboard
    assert rows[0][0].text == label("share_phone") and rows[0][0].request_contact is True
    assert rows[1][0].text == "254708374149" and not rows[1][0].request_contact
    assert out.markup.one_time_keyboard and out.markup.resize_keyboard
    assert out.html == f"Which number?\n\n{say('tg_type_number_note')}"
    assert out.edit is False  # a reply keyboard needs a new message


def test_the_typing_note_is_not_repeated_when_the_engine_already_says_so():
    [out] = render_reply(
        Reply("Type it (e.g. 0712 345 678) or choose below.", ask_phone=True, says_typing=True),
        can_edit=False,
    )
    assert out.plain == "Type it (e.g. 0712 345 678) or choose below."


def test_the_typing_note_is_decided_by_the_reply_structure_not_by_an_english_word():
    # Kiswahili text that says "type it" ("iandike") and English text that happens to contain
    # "type" get the note exactly when the reply does not carry says_typing.
    [kiswahili] = render_reply(
        Reply("Iandike (mfano 0712 345 678).", ask_phone=True, says_typing=True, lang="sw"), can_edit=False
    )
    assert kiswahili.plain == "Iandike (mfano 0712 345 678)."
    [typed_word] = render_reply(Reply("Session type: Individual", ask_phone=True), can_edit=False)
    assert typed_word.plain.endswith(say("tg_type_number_note"))
    [noted] = render_reply(Reply("Namba gani?", ask_phone=True, lang="sw"), can_edit=False)
    assert noted.plain == f"Namba gani?\n\n{say('tg_type_number_note', lang='sw')}"
    assert noted.markup.keyboard[0][0].text == label("share_phone", "sw") == "Tuma namba yangu ya simu"


def test_ask_phone_with_options_sends_the_options_then_the_phone_keyboard():
    reply = Reply(
        "Retrying on 0712…",
        ask_phone=True,
        options=(Option("Use another number", "v1:chphone:3"),),
        edit_previous=True,
    )
    first, second = render_reply(reply, can_edit=True)
    assert isinstance(first.markup, InlineKeyboardMarkup) and first.edit
    assert isinstance(second.markup, ReplyKeyboardMarkup) and not second.edit
    assert "type" in second.plain


def test_remove_keyboard_uses_reply_keyboard_remove_and_options_follow_in_a_second_message():
    [only] = render_reply(
        Reply("Check your phone", remove_keyboard=True, tag="payment_progress:5"), can_edit=True
    )
    assert isinstance(only.markup, ReplyKeyboardRemove) and only.tag == "payment_progress:5" and not only.edit
    first, second = render_reply(
        Reply("Done", remove_keyboard=True, options=(Option("Menu", "v1:help"),)), can_edit=False
    )
    assert isinstance(first.markup, ReplyKeyboardRemove)
    assert second.plain == say("tg_more_options") and _rows(second.markup) == [[("Menu", "v1:help")]]  # type: ignore[arg-type]


def test_a_turn_that_does_not_ask_for_a_phone_removes_the_reply_keyboard_with_its_first_plain_message():
    menu = Reply("What would you like to do?", options=(Option("Book", "v1:book"),))
    turn = [menu, Reply("Our earlier conversation timed out."), Reply("Anything else?")]
    out = clear_reply_keyboard(turn, can_edit=False)
    assert [r.remove_keyboard for r in out] == [False, True, False]
    assert out[1].text == turn[1].text and turn[1].remove_keyboard is False  # a copy; the engine's is kept


def test_a_turn_that_asks_for_a_phone_or_already_removes_the_keyboard_is_left_alone():
    asking = [Reply("That is not a Kenyan number."), Reply("Which number?", ask_phone=True)]
    assert clear_reply_keyboard(asking, can_edit=False) == asking
    removing = [Reply("Check your phone", remove_keyboard=True, tag="payment_progress:5"), Reply("Note")]
    assert clear_reply_keyboard(removing, can_edit=False) == removing


def test_the_keyboard_removal_never_turns_an_edit_into_a_new_message_or_displaces_buttons():
    edit = Reply("Approved", edit_previous=True)
    only_buttons = [Reply("Pick a day", options=(Option("Mon", "v1:dy:1"),), edit_previous=True)]
    assert clear_reply_keyboard(only_buttons, can_edit=True) == only_buttons
    assert clear_reply_keyboard([edit], can_edit=True) == [edit]
    assert clear_reply_keyboard([edit, Reply("Next")], can_edit=True)[1].remove_keyboard
    # typed text: there is no pressed message to edit, so the reply is a new message anyway
    [sent] = clear_reply_keyboard([edit], can_edit=False)
    [out] = render_reply(sent, can_edit=False)
    assert sent.remove_keyboard and isinstance(out.markup, ReplyKeyboardRemove)


def test_edit_previous_edits_only_after_a_button_press():
    reply = Reply("Approved", edit_previous=True)
    assert render_reply(reply, can_edit=True)[0].edit is True
    assert render_reply(reply, can_edit=False)[0].edit is False


def test_a_long_text_is_split_at_line_breaks_and_the_buttons_go_on_the_last_piece():
    text = "\n".join(f"Line {i} " + "x" * 60 for i in range(200))
    out = render_reply(Reply(text, options=(Option("OK", "v1:help"),), edit_previous=True), can_edit=True)
    assert len(out) > 1
    assert all(len(o.plain) <= 4000 for o in out)
    assert "\n".join(o.plain for o in out) == text
    assert all(o.markup is None for o in out[:-1]) and out[-1].markup is not None
    assert not any(o.edit for o in out)


@given(st.text(min_size=1, max_size=9000))
def test_splitting_never_loses_a_character_or_exceeds_the_limit(text):
    pieces = split_text(text)
    assert all(len(p) <= 4000 for p in pieces)
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    ("tag", "attempt"),
    [("payment_progress:12", 12), ("payment_progress:x", None), ("other:12", None), (None, None)],
)
def test_the_progress_tag_names_the_attempt(tag, attempt):
    assert progress_attempt_id(tag) == attempt


@pytest.mark.parametrize(
    ("typed", "seen"),
    [
        ("/book@SmilingStepsBot", "/book"),
        ("/start abc", "/start abc"),
        ("/pay@Bot 12", "/pay 12"),
        ("  /help ", "/help"),
    ],
)
def test_commands_addressed_to_the_bot_reach_the_engine_without_the_bot_name(typed, seen):
    assert command_text(typed) == seen


def test_a_paid_result_shows_amount_receipt_and_the_test_mode_marker():
    text, options = result_text(payment_view(status=PaymentStatus.PAID, receipt="SGR7XYZ123"))
    assert text.startswith(mode_marker() + "\n")
    assert "KES 2,500" in text and "SGR7XYZ123" in text
    assert options == ()


@pytest.mark.parametrize("status", [PaymentStatus.FAILED, PaymentStatus.CANCELLED, PaymentStatus.TIMED_OUT])
def test_a_failed_result_gives_the_reason_with_retry_payment_and_use_another_number(status):
    view = payment_view(
        booking_id=31, status=status, client_message="Your M-Pesa balance was not enough.", test_mode=False
    )
    text, options = result_text(view)
    assert text == "❌ Your M-Pesa balance was not enough."
    assert options == (
        Option(label("retry"), "v1:pay:31"),
        Option(label("change_phone"), "v1:chphone:31"),
    )


def test_a_failure_without_a_known_reason_still_offers_retry():
    text, options = result_text(payment_view(status=PaymentStatus.FAILED, client_message=None))
    assert "did not go through" in text and options[0].value.startswith("v1:pay:")


def test_the_waiting_line_names_what_we_wait_for_and_the_elapsed_seconds():
    assert waiting_line(payment_view(status=PaymentStatus.AWAITING_CUSTOMER), 7).endswith(
        "on your phone… 7 s"
    )
    assert "Contacting M-Pesa" in waiting_line(payment_view(status=PaymentStatus.QUEUED), 1)
    assert "Checking the payment" in waiting_line(payment_view(status=PaymentStatus.UNCLEAR), 130)


# Feature: mpesa-payment-integration, Property 15: Payment Status Polling Frequency
def test_the_progress_refresh_interval_cannot_be_set_to_3_seconds_or_more():
    with pytest.raises(ValueError, match="3 s"):
        PaymentProgress(None, None, None, interval=3.0)  # type: ignore[arg-type]
    assert PaymentProgress(None, None, None).interval < 3.0  # type: ignore[arg-type]
