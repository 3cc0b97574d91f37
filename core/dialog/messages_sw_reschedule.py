"""Kiswahili of the rescheduling keys (``# -- reschedule --`` in :mod:`core.dialog.messages`).

Kept apart so the language work (helper h15lang) and rescheduling merge cleanly; the lead
folds these into the Kiswahili catalogue. Plain, polite, Kenyan; never words naming the
kind of care ("miadi", "kikao", "mtaalamu").
"""

from __future__ import annotations

from collections.abc import Mapping

LABELS_SW_RESCHEDULE: dict[str, str] = {
    "reschedule": "Badilisha muda",
    "yes_move": "Ndiyo, hamisha",
}

SW_RESCHEDULE: dict[str, str | Mapping[str, str]] = {
    "move_intro": {
        "default": "Tuhamishe {reference}, sasa ni {when}: mtaalamu ({therapist}) na bei ni zile zile.",
        "sms": "Kuhamisha {reference} (sasa {when}).",
    },
    "move_no_days": "{therapist} hana nafasi nyingine katika siku 14 zijazo; {reference} kinabaki {when}.",
    "move_confirm": {
        "default": "Hamisha {reference} kutoka {old} hadi {new}?",
        "sms": "Hamisha {reference} hadi {new}?",
    },
    "move_done": "Imekamilika: {reference} sasa ni {when}. {therapist} amearifiwa.",
    "move_done_paid": (
        "Imekamilika: {reference} sasa ni {when}. Malipo yako yanabaki nacho; {therapist} amearifiwa."
    ),
    "move_requested": (
        "Ombi limetumwa: {therapist} atathibitisha kuhamisha {reference} hadi {when}. "
        "Hadi hapo ni {old}."
    ),
    "move_kept": "Sawa, {reference} kinabaki {when}.",
    "move_too_late": (
        "Samahani, {reference} kinaweza kuhamishwa hadi {window} kabla ya kuanza. "
        "Tafadhali wasiliana na ofisi."
    ),
    "move_off": "Samahani, vikao haviwezi kuhamishwa hapa. Tafadhali wasiliana na ofisi kuhusu {reference}.",
    "move_not_allowed": (
        "Samahani, {reference} hakiwezi kuhamishwa: ni vikao vilivyokubaliwa au kulipiwa tu vinavyoweza."
    ),
    "move_payment_live": "Malipo ya {reference} yanaendelea. Tafadhali jaribu tena yakikamilika.",
    "move_same_time": "Huo tayari ndio muda wa {reference}. Tafadhali chagua muda mwingine.",
    "move_changed": "{reference} kimebadilika sasa hivi. Tuma ZANGU kukiona.",
    "move_approved_done": "Umekubali: {reference} sasa ni {when}. {client} amearifiwa.",
    "move_declined_done": "Umekataa: {reference} kinabaki {when}. {client} amearifiwa.",
    "move_already_decided": "Ombi hilo tayari limejibiwa.",
    "move_request_gone": "Ombi hilo halitumiki tena: kikao kimebadilishwa au kimeghairiwa.",
}
