"""The message catalogue: every sentence and button label the conversation shows, per language.

Handlers never hold user-facing literals; they call :func:`say` / :func:`label` with a key
and the turn's language. English is here (:data:`EN`, :data:`LABELS_EN`); Kiswahili is in
:mod:`core.dialog.messages_sw` (:data:`SW`, :data:`LABELS_SW`) with the same keys and the
same ``{field}`` names (a catalogue test fails when a key or a field exists in one language
only). Dates and amounts are formatted per language by :mod:`core.i18n` (Babel).

An entry is either one string or ``{"default": ..., "sms": ...}`` when SMS needs a shorter
or different wording (SMS fits 160 GSM-7 characters where possible). Wording is discreet
everywhere: "session" and "practitioner" ("kikao", "miadi", "mtaalamu"), never words naming
the kind of care, because a chat preview or an SMS may be read by anyone holding the phone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from core import i18n
from core.dialog.messages_sw import LABELS_SW, REASONS_SW, SW
from core.domain.phone import ACCEPTED_FORMATS
from core.domain.slots import NAIROBI

Entry = str | Mapping[str, str]

LABELS_EN: dict[str, str] = {
    # Exact labels other parts of the system and the tests rely on (DESIGN.md §4).
    "approve": "Approve",
    "decline": "Decline",
    "pay": "Pay with M-Pesa",
    "retry": "Retry payment",
    "skip": "Skip",
    "confirm": "Confirm",
    "cancel": "Cancel",
    "share_phone": "Share my phone number",
    # Other choices.
    "book": "Book a session",
    "my": "My sessions",
    "help": "Help",
    "more": "More",
    "change_phone": "Use another number",
    "dont_pay": "No, do not pay",
    "cancel_booking": "Cancel booking",
    "yes_cancel": "Yes, cancel it",
    "keep": "Keep it",
    "today": "Today",
    "upcoming": "Upcoming",
    "all": "All sessions",
    # The language menu (/language): each language named in itself, the same in every catalogue.
    "lang_en": "English",
    "lang_sw": "Kiswahili",
    # -- reschedule --
    "reschedule": "Reschedule",
    "yes_move": "Yes, move it",
    # -- practitioner calendar --
    "away_keep": "Block, keep the sessions",
    "away_dont": "Don't block",
    "away_rest_of_week": "Rest of this week",
    "away_next_week": "All next week",
}

EN: dict[str, Entry] = {
    # -- general --------------------------------------------------------------------------
    "welcome": {
        "default": "Welcome to Smiling Steps! I can book a session for you and take payment by M-Pesa.",
        "sms": "Welcome to Smiling Steps.",
    },
    "menu": "What would you like to do?",
    "help": {
        "default": (
            "Here is what I can do:\n"
            "/book - book a session\n"
            "/my - your sessions and payments\n"
            "/pay - pay for an approved session\n"
            "/cancel - stop what we are doing\n"
            "/language - Kiswahili or English\n"
            "/help - this message"
        ),
        "sms": (
            "Smiling Steps: reply BOOK to book a session, MY for your sessions, PAY to pay, "
            "STOP to stop, SWAHILI for Kiswahili."
        ),
    },
    "help_step": {
        "default": "Please choose one of the options above, or send /cancel to stop.",
        "sms": "Please reply with the number of your choice, or STOP to stop.",
    },
    "choose_number": "Please reply with a number from 1 to {count}.",
    "stopped": {
        "default": "Stopped. Send /book whenever you want to start again.",
        "sms": "Stopped. Reply BOOK whenever you want to start again.",
    },
    "expired": "Our earlier conversation timed out after 30 minutes, so let's start again.",
    "stale_option": "That choice is from an earlier message and no longer applies.",
    "try_again": "Sorry, I was still busy with your previous message. Please try again.",
    "error": "Sorry, something went wrong on our side. Please try again in a moment.",
    "phone_noted": "Thanks, I noted your number.",
    "reply_one": "Reply 1",
    "or": "or",
    # /language, LUGHA / LANGUAGE: the menu names each language in itself, so it is bilingual.
    "language_menu": "Choose your language / Chagua lugha:",
    "language_set": "OK, I will write to you in English.",
    # The calendar invitation (.ics) attached to the payment e-mail.
    "ics_summary": "Smiling Steps session",
    "ics_summary_with": "Smiling Steps session with {name}",
    "ics_description": "Join: {url}\nBooking reference: {reference}",
    "ics_reference": "Booking reference: {reference}",  # no join link yet (an unpaid, moved session)
    "reply_range": "Reply 1-{last}",
    # -- booking ----------------------------------------------------------------------------
    "choose_therapist": "Who would you like to see?",
    "choose_type": "Which kind of session?",
    "type_label": {"default": "{name} · {minutes} min · {price}", "sms": "{name} {minutes}min {price}"},
    "choose_day": {
        "default": "Pick a day (times are Nairobi time):",
        "sms": "Pick a day:",
    },
    "choose_time": "Pick a start time on {day}:",
    "no_therapists": "Sorry, nobody is taking bookings right now. Please try again later.",
    "no_types": "Sorry, no sessions can be booked right now. Please try again later.",
    "no_days": "{therapist} has no free times in the next 14 days. Please choose someone else.",
    "no_times": "That day has just filled up. Please pick another day.",
    "ask_email": {
        "default": (
            "Would you like the payment instructions and your receipt by e-mail? "
            "Type your e-mail address, or choose Skip."
        ),
        "sms": "Type your e-mail address for a receipt, or choose Skip.",
    },
    "invalid_email": "That does not look like an e-mail address. Please type it again, or choose Skip.",
    "summary": {
        "default": (
            "Please check your request:\n"
            "{session_type} ({minutes} min) with {therapist}\n"
            "{when}\n"
            "Price: {price}\n"
            "E-mail: {email}\n"
            "Confirm to send it to {therapist} for approval."
        ),
        "sms": "{session_type} with {therapist}, {when}, {price}. Confirm?",
    },
    "no_email": "none",
    "booking_sent": {
        "default": (
            "Request sent (ref {reference}). {therapist} will look at it soon; once it is approved "
            "you will get a message to pay {price} with M-Pesa."
        ),
        "sms": "Request {reference} sent. When it is approved we will text you to pay {price} by M-Pesa.",
    },
    "slot_taken": "Sorry, that time was just taken. Please pick another time.",
    "slot_gone": "Sorry, that time is no longer available. Please pick another one.",
    "booking_dropped": "OK, nothing was booked.",
    # -- my sessions --------------------------------------------------------------------------
    "my_none": {
        "default": "You have no upcoming sessions. Send /book to book one.",
        "sms": "You have no upcoming sessions. Reply BOOK to book one.",
    },
    "my_header": "Your sessions:",
    "my_line": {
        "default": "{reference}: {session_type} with {therapist}, {when}.\n{status}",
        "sms": "{reference} {when}: {status}",
    },
    "status_PENDING_APPROVAL": "Waiting for approval.",
    "status_APPROVED": "Approved, not paid yet ({price}).",
    "status_CONFIRMED": "Paid and confirmed (M-Pesa {receipt}).",
    "status_COMPLETED": "Completed.",
    "status_DECLINED": "Declined.",
    "status_CANCELLED": "Cancelled.",
    "status_EXPIRED": "Expired.",
    "pay_state_AWAITING_CUSTOMER": "An M-Pesa prompt is waiting on your phone.",
    "pay_state_QUEUED": "M-Pesa was not answering; we are retrying.",
    "pay_state_UNCLEAR": "We are checking the last payment with M-Pesa.",
    "pay_state_FAILED": "The last payment attempt failed.",
    "pay_state_CANCELLED": "The last payment attempt was cancelled.",
    "pay_state_TIMED_OUT": (
        "The last M-Pesa request timed out. If you got an M-Pesa confirmation SMS you have paid; "
        "otherwise choose Retry payment."
    ),
    "pay_state_NEEDS_REVIEW": "We are checking your payment; please do not pay again.",
    # -- paying ------------------------------------------------------------------------------------
    "test_mark": "[TEST MODE] ",
    "nothing_to_pay": {
        "default": "You have no approved session waiting for payment. Send /my to see your sessions.",
        "sms": "You have no approved session waiting for payment. Reply MY to see your sessions.",
    },
    "choose_booking_to_pay": "Which session do you want to pay for?",
    "pay_which_line": "{reference}: {when}, {price}",
    "ask_phone": {
        "default": (
            "Which M-Pesa number should pay {price} for {reference}? "
            "Type it (e.g. 0712 345 678) or choose a number below."
        ),
        "sms": "Which M-Pesa number should pay {price} for {reference}? Type it or choose:",
    },
    "test_number_hint": "Safaricom's sandbox test number 254708374149 is offered for testing.",
    "invalid_phone": "That is not a Kenyan mobile number. Use one of: {formats}.",
    "not_safaricom": (
        "Note: {phone} may not be a Safaricom line, and M-Pesa prompts only reach Safaricom numbers. "
        "Trying anyway."
    ),
    "check_phone": {
        "default": (
            "Check your phone: an M-Pesa prompt for {price} (ref {reference}) was sent to {phone}. "
            "Enter your M-Pesa PIN there to pay. We never ask for your PIN here."
        ),
        "sms": "Check your phone: M-Pesa prompt for {price} (ref {reference}) sent to {phone}. "
        "Enter your PIN.",
    },
    "already_waiting": (
        "An M-Pesa prompt for {reference} is already waiting on {phone}. Please check your phone."
    ),
    "retrying": "Sending the M-Pesa prompt again to {phone}.",
    "pay_queued": (
        "M-Pesa is not answering right now. Nothing was charged; "
        "we will send the prompt again in {seconds} seconds."
    ),
    "pay_unclear": (
        "We sent the request, but M-Pesa has not confirmed it reached {phone}. If a prompt appears, "
        "enter your PIN; we are checking with M-Pesa and will tell you the result."
    ),
    "pay_failed_now": "M-Pesa did not accept the request. Nothing was charged; please try again.",
    "pay_already_paid": "{reference} is already paid.",
    "pay_not_approved": "{reference} can be paid once it has been approved.",
    "pay_not_payable": "{reference} can no longer be paid.",
    "pay_not_found": "I could not find that session.",
    "pay_unavailable": "We could not start the payment just now. Nothing was charged; please try again.",
    "pay_busy": "A payment for this session is already starting. Please wait a moment.",
    # PAY / /pay when an earlier attempt used a number: the same one, or another (DESIGN §4).
    "pay_which_number": "Pay {price} for {reference} from which number?",
    "pay_same_number": "Same number ({phone})",
    # A number typed or shared outside the phone step, with one session to pay.
    "pay_confirm_number": {
        "default": (
            "Pay {price} for {reference} from {phone}? Your last M-Pesa payment used {last}."
        ),
        "sms": "Pay {price} for {reference} from {phone}? Last time you used {last}.",
    },
    "pay_from_number": "Yes, pay from {phone}",
    "pay_number_declined": {
        "default": "OK, no payment prompt was sent. Send /pay when you are ready.",
        "sms": "OK, no payment prompt was sent. Reply PAY when you are ready.",
    },
    "pay_change_live": (
        "The M-Pesa prompt sent to {phone} is still open. If that is the wrong phone, wait for it to "
        "expire (about 2 minutes) and then choose Use another number."
    ),
    # -- cancelling a booking ----------------------------------------------------------------------------
    "cancel_confirm": "Cancel {reference} on {when}?",
    "cancel_confirm_paid": {
        "default": (
            "Cancel {reference} on {when}? You have paid {price}; "
            "if you cancel, the practice will arrange your refund."
        ),
        "sms": "Cancel {reference} on {when}? The practice will arrange a refund of {price}.",
    },
    "cancel_done": "{reference} is cancelled.",
    "cancel_done_refund": {
        "default": (
            "{reference} is cancelled. The practice will arrange the refund of your {price} "
            "(M-Pesa {receipt})."
        ),
        "sms": "{reference} is cancelled. The practice will arrange the refund of {price}.",
    },
    "cancel_kept": "OK, your booking stays as it is.",
    "cancel_not_allowed": "{reference} can no longer be cancelled here. Please contact the practice.",
    "cancel_paid_not_allowed": (
        "{reference} is paid, so it cannot be cancelled here. Please contact the practice."
    ),
    "cancel_too_late": (
        "Paid sessions can be cancelled here until {window} before they start, so {reference} "
        "can no longer be cancelled here. Please contact the practice."
    ),
    "one_hour": "1 hour",
    "hours": "{count} hours",
    "cancel_payment_live": "A payment for {reference} is in progress; please wait for it to finish.",
    # -- practitioners -------------------------------------------------------------------------------------
    "linked": "Welcome, {name}! Your Telegram account is now linked. Booking requests will arrive here.",
    "link_invalid": "That link is not valid or has already been used. Please ask the practice for a new one.",
    "link_taken": "This Telegram account is already linked to another practitioner.",
    "dashboard": {
        "default": (
            "Hello {name}. Today: {today} session(s), {paid} paid. Waiting for your approval: {pending}."
        ),
        "sms": "Hello {name}. Today: {today}, {paid} paid. To approve: {pending}.",
    },
    "therapist_help": {
        "default": (
            "/today - today's sessions\n/upcoming - upcoming sessions\n/sessions - all sessions\n"
            "Approve or decline each request with its buttons."
        ),
        "sms": "Reply TODAY, UPCOMING or ALL to list sessions. Approve with A<code>, decline with D<code>.",
    },
    "request_card": {
        "default": "Request {reference}: {client}, {session_type} ({minutes} min), {when}, {price}.",
        "sms": "{reference}: {client}, {when}. Reply A{code} to approve or D{code} to decline.",
    },
    "sessions_today": "Today's sessions:",
    "sessions_upcoming": "Upcoming sessions:",
    "sessions_all": "All sessions:",
    "sessions_none": "No sessions.",
    "session_line": {
        "default": "{mark} {when} · {client} · {session_type} · {status}{receipt} · {reference}",
        "sms": "{mark} {when}, {client}, {status}{receipt}",
    },
    "mark_paid": "[PAID]",
    "mark_unpaid": "[UNPAID]",
    "receipt_part": {"default": " · M-Pesa {receipt}", "sms": ", M-Pesa {receipt}"},
    "tstatus_PENDING_APPROVAL": "awaiting your approval",
    "tstatus_APPROVED": "approved, awaiting payment",
    "tstatus_CONFIRMED": "confirmed",
    "tstatus_COMPLETED": "completed",
    "tstatus_DECLINED": "declined",
    "tstatus_CANCELLED": "cancelled",
    "tstatus_EXPIRED": "expired",
    "approved_done": "Approved {reference}. {client} has been asked to pay.",
    "declined_done": "Declined {reference}. {client} has been told.",
    "client_unnamed": "Client",
    "the_client": "The client",
    "already_approved": "{reference} is already approved; nothing more to do.",
    "already_declined": "{reference} was already declined.",
    "not_pending": "{reference} is no longer waiting for approval.",
    "request_not_found": "I could not find that request.",
    "unknown_code": "No request with code {code} is waiting for you.",
    "too_late": "{reference} can no longer be approved: its start time has passed.",
    # -- Telegram adapter (bot/): texts only the Telegram channel shows -----------------------------
    # The command menu (setMyCommands): one "tg_command_<command>" per command.
    "tg_command_start": "Start, or go back to the main menu",
    "tg_command_book": "Book a session",
    "tg_command_sessions": "Your bookings and their payment status",
    "tg_command_pay": "Pay for an approved booking with M-Pesa",
    "tg_command_cancel": "Cancel what you are doing, or a booking",
    "tg_command_help": "What this bot can do",
    "tg_command_language": "Kiswahili or English",
    "tg_command_today": "Today's sessions",
    "tg_command_upcoming": "Upcoming sessions and requests",
    # Updates the engine never sees.
    "tg_own_number_only": (
        'For your safety I can only use your own phone number. Tap "Share my phone number" '
        "or type the M-Pesa number you want to pay with."
    ),
    "tg_text_only": "I can only read text messages and button taps. Send /help to see what I can do.",
    # The phone step's reply keyboard.
    "tg_type_number_note": "You can also type the number, e.g. 0712 345 678.",
    "tg_share_other": "Or share another number: tap the button below, or type it.",
    "tg_more_options": "Choose an option:",
    # The live payment-progress message (bot/progress.py); {seconds}: time since the prompt was sent.
    "tg_progress_queued": "⏳ Contacting M-Pesa… {seconds} s",
    "tg_progress_unclear": "⏳ Checking the payment with M-Pesa… {seconds} s",
    "tg_progress_waiting": "⏳ Waiting for you to confirm on your phone… {seconds} s",
    "tg_progress_overdue": (
        "⏳ No answer from M-Pesa yet. We are checking the payment with M-Pesa and will "
        "update this message. Please do not pay again for now."
    ),
    "tg_progress_paid": (
        "✅ Payment received: {price}.\nM-Pesa receipt: {receipt}\nYour session is confirmed."
    ),
    "tg_progress_paid_no_receipt": "✅ Payment received: {price}.\nYour session is confirmed.",
    "tg_progress_needs_review": (
        "⚠️ We need to check this payment by hand. Please do not pay again; we will message you here."
    ),
    # {reason}: the payment service's sentence for the client (why it failed), or tg_progress_failed_generic.
    "tg_progress_failed": "❌ {reason}",
    "tg_progress_failed_generic": "The payment did not go through. You can retry now.",
    # The failure notice (with Retry payment / Use another number) was delivered before this edit.
    "tg_progress_failed_see_notice": (
        "❌ This payment did not go through; what you can do next is in the message below."
    ),
    # -- reschedule --
    # The client moves a session: {reference}; {when}/{old}/{new}: times as the chat shows them.
    "move_intro": {
        "default": "Let's move {reference}, now on {when}: same practitioner ({therapist}) and price.",
        "sms": "Moving {reference} (now {when}).",
    },
    "move_no_days": "{therapist} has no other free times in the next 14 days; {reference} stays on {when}.",
    "move_confirm": {
        "default": "Move {reference} from {old} to {new}?",
        "sms": "Move {reference} to {new}?",
    },
    "move_done": "Done: {reference} is now on {when}. {therapist} has been told.",
    "move_done_paid": (
        "Done: {reference} is now on {when}. Your payment stays with it; {therapist} has been told."
    ),
    "move_requested": (
        "Request sent: {therapist} will confirm moving {reference} to {when}. Until then it stays on {old}."
    ),
    "move_kept": "OK, {reference} stays on {when}.",
    "move_too_late": (
        "Sorry, {reference} can be moved until {window} before it starts. Please contact the practice."
    ),
    "move_off": "Sorry, sessions cannot be moved here. Please contact the practice about {reference}.",
    "move_not_allowed": "Sorry, {reference} cannot be moved: only approved or paid upcoming sessions can.",
    "move_payment_live": "A payment for {reference} is in progress. Please try again when it has finished.",
    "move_same_time": "That is already the time of {reference}. Please pick another time.",
    "move_changed": "{reference} changed a moment ago. Send MY to see it.",
    # The practitioner answers a client's request to move a session.
    "move_approved_done": "Approved: {reference} is now on {when}. {client} has been told.",
    "move_declined_done": "Declined: {reference} stays on {when}. {client} has been told.",
    "move_already_decided": "That request was already answered.",
    "move_request_gone": "That request no longer applies: the session was changed or cancelled.",
    # -- practitioner calendar --
    "tg_command_hours": "Your weekly hours: see or change them",
    "tg_command_away": "Time off: block days or hours, or remove a block",
    "therapist_help_calendar": {
        "default": "/hours - your weekly hours\n/away - block time off (e.g. /away 24-26 Dec)",
        "sms": "HOURS: your weekly hours. AWAY 24 DEC: block time off.",
    },
    "hours_show": {
        "default": (
            "Your weekly hours (Nairobi time):\n{hours}\n"
            "To change them, send all of them, e.g.\n/hours mon-fri 09:00-17:00; sat 10:00-13:00"
        ),
        "sms": "Your hours: {hours}. To change, e.g. HOURS mon-fri 09:00-17:00; sat 10:00-13:00",
    },
    "hours_none": "none",
    "hours_saved": {
        "default": "Saved. Your weekly hours are now:\n{hours}\nClients are offered these times from now on.",
        "sms": "Saved. Your hours: {hours}",
    },
    "hours_invalid": {
        "default": (
            "I could not read those hours; nothing was changed. Give each day and time, e.g.\n"
            "/hours mon-fri 09:00-17:00; sat 10:00-13:00"
        ),
        "sms": "Could not read those hours; nothing changed. E.g. HOURS mon-fri 09:00-17:00; sat 10:00-13:00",
    },
    "hours_outside": {
        "default": (
            "These booked sessions are outside your new hours. They stay booked: please contact "
            "the clients, or ask the practice to cancel:"
        ),
        "sms": "Still booked, outside your new hours:",
    },
    "away_header": "Your time off:",
    "away_none": "You have no time off ahead.",
    "away_usage": {
        "default": (
            "To block time, tap a day below or send e.g.\n"
            "/away 24 Dec\n/away 24-26 Dec\n/away 24 Dec 14:00-17:00"
        ),
        "sms": "To block time: AWAY 24 DEC, AWAY 24-26 DEC or AWAY 24 DEC 14:00-17:00.",
    },
    "away_remove_hint": {
        "default": "To give a block back to clients, tap it below.",
        "sms": "To remove one, reply its number.",
    },
    "away_remove_label": "Remove {span}",
    "away_span_days": "{first} to {last}",
    "away_span_part": "{day}, {start}-{end}",
    "away_saved": {
        "default": "Blocked {span}. Clients are no longer offered those times.",
        "sms": "Blocked {span}. No bookings will be offered then.",
    },
    "away_saved_kept": {
        "default": (
            "Blocked {span}. These sessions stay booked: please contact the clients, "
            "or ask the practice to cancel:"
        ),
        "sms": "Blocked {span}. Still booked, please contact the clients:",
    },
    "away_clash": {
        "default": (
            "You have {count} booked session(s) in {span}. Blocking the time does not cancel them:"
        ),
        "sms": "{count} session(s) booked in {span}; a block does not cancel them:",
    },
    "away_clash_line": "{reference} {when}",
    "away_clash_ask": {
        "default": (
            "Block the time and keep these sessions? You then contact the clients, "
            "or ask the practice to cancel."
        ),
        "sms": "Block anyway and keep them?",
    },
    "away_not_saved": "OK, nothing was blocked.",
    "away_covered": "{span} is already blocked.",
    "away_removed": "Removed the block {span}. Those times are offered to clients again.",
    "away_remove_gone": "That block was already removed.",
    "away_example": {
        "default": "Examples: /away 24 Dec, /away 24-26 Dec, /away 24 Dec 14:00-17:00",
        "sms": "E.g. AWAY 24 DEC, AWAY 24-26 DEC or AWAY 24 DEC 14:00-17:00",
    },
    "away_unreadable": "I could not read that date; nothing was blocked.",
    "away_no_date": "That date does not exist; nothing was blocked.",
    "away_past": "That time has passed; nothing was blocked.",
    "away_too_far": "That is more than a year ahead; nothing was blocked.",
    "away_backwards": "The end comes before the start; nothing was blocked.",
    "away_too_long": "One block can be at most {days} days; for longer, please ask the practice.",
    "away_times_one_day": "Times can go with one day only; block the days, or each day's hours apart.",
    "away_bad_times": "Those times do not work: the end must come after the start (e.g. 14:00-17:00).",
}

LANGUAGES: dict[str, dict[str, Entry]] = {"en": EN, "sw": SW}
LABELS: dict[str, dict[str, str]] = {"en": LABELS_EN, "sw": LABELS_SW}
# The payment service's client sentences (English, carried as data) in other languages.
REASONS: dict[str, dict[str, str]] = {"sw": REASONS_SW}
DEFAULT_LANGUAGE = i18n.DEFAULT
PHONE_FORMATS = ACCEPTED_FORMATS


def _entry(key: str, lang: str) -> Entry:
    table = LANGUAGES.get(lang, EN)
    if key in table:
        return table[key]
    return EN[key]  # KeyError for an unknown key: a programming error, caught by tests


def say(key: str, channel: str = "telegram", lang: str = DEFAULT_LANGUAGE, **fields: object) -> str:
    """The sentence ``key`` for ``channel`` in ``lang`` with ``fields`` filled in."""
    entry = _entry(key, lang)
    if not isinstance(entry, str):
        entry = entry.get(channel) or entry["default"]
    return entry.format(**fields) if fields else entry


def label(key: str, lang: str = DEFAULT_LANGUAGE) -> str:
    """A button label."""
    return LABELS.get(lang, LABELS_EN).get(key) or LABELS_EN[key]


def phone_formats(lang: str = DEFAULT_LANGUAGE) -> str:
    """The accepted phone formats, joined with the language's "or"."""
    return PHONE_FORMATS.replace(" or ", f" {say('or', lang=lang)} ")


def reason(text: str, lang: str = DEFAULT_LANGUAGE) -> str:
    """A payment-failure sentence from the payment service (English) in ``lang``."""
    return REASONS.get(lang, {}).get(text, text)


def price(amount_kes: int, lang: str = DEFAULT_LANGUAGE) -> str:
    """``KES 2,500``."""
    return i18n.amount(amount_kes, lang)


def day_label(day: date, lang: str = DEFAULT_LANGUAGE) -> str:
    """``Mon 03 Jun`` / ``Jumatatu 03 Jun``."""
    return i18n.day(day, lang)


def time_label(moment: datetime) -> str:
    """``10:00`` in Nairobi time."""
    return moment.astimezone(NAIROBI).strftime("%H:%M")


def when(moment: datetime, lang: str = DEFAULT_LANGUAGE, *, channel: str = "telegram") -> str:
    """``Mon 03 Jun, 10:00 EAT`` (SMS: without the zone) for a stored UTC time."""
    return i18n.moment(moment, lang, zone=channel != "sms")


def display_phone(msisdn: str) -> str:
    """``0712 345 678`` for ``254712345678`` (the client's own number, shown back to them)."""
    if len(msisdn) == 12 and msisdn.startswith("254"):
        local = "0" + msisdn[3:]
        return f"{local[:4]} {local[4:7]} {local[7:]}"
    return msisdn
