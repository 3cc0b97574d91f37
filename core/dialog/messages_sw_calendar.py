"""Kiswahili of the practitioner calendar (``/hours``, ``/away``): the same keys and ``{field}``
names as the ``# -- practitioner calendar --`` part of :data:`core.dialog.messages.EN` /
:data:`core.dialog.messages.LABELS_EN`, to be folded into the Kiswahili catalogue
(``SW = {**_SW_BASE, **SW_CALENDAR}``).

Plain, polite, short, as a Kenyan would text. Discretion: a session is "kikao", a practitioner
"mtaalamu"; never a word naming the kind of care. Commands and SMS keywords (HOURS, AWAY) and
the hours form (``mon-fri 09:00-17:00``) stay as they are typed; dates may be typed with
Kiswahili month names too (``AWAY 24 DES``, core/domain/time_off.py).
"""

from __future__ import annotations

from collections.abc import Mapping

Entry = str | Mapping[str, str]

LABELS_SW_CALENDAR: dict[str, str] = {
    "away_keep": "Zuia, vikao vibaki",
    "away_dont": "Usizuie",
    "away_rest_of_week": "Siku zilizobaki wiki hii",
    "away_next_week": "Wiki ijayo yote",
}

SW_CALENDAR: dict[str, Entry] = {
    "tg_command_hours": "Saa zako za kazi kila wiki: ona au badilisha",
    "tg_command_away": "Zuia siku au saa usizopatikana, au ondoa",
    "therapist_help_calendar": {
        "default": (
            "/hours - saa zako za kazi kila wiki\n/away - zuia muda usiopatikana (mf. /away 24-26 Des)"
        ),
        "sms": "HOURS: saa zako za kazi. AWAY 24 DES: zuia muda usiopatikana.",
    },
    "hours_show": {
        "default": (
            "Saa zako za kazi kila wiki (saa za Nairobi):\n{hours}\n"
            "Kuzibadilisha, tuma zote upya, mf.\n/hours mon-fri 09:00-17:00; sat 10:00-13:00"
        ),
        "sms": "Saa zako: {hours}. Kubadilisha, mf. HOURS mon-fri 09:00-17:00; sat 10:00-13:00",
    },
    "hours_none": "hakuna",
    "hours_saved": {
        "default": (
            "Imehifadhiwa. Saa zako za kazi sasa ni:\n{hours}\nWateja wataona nyakati hizi kuanzia sasa."
        ),
        "sms": "Imehifadhiwa. Saa zako: {hours}",
    },
    "hours_invalid": {
        "default": (
            "Sikuweza kusoma saa hizo; hakuna kilichobadilishwa. Andika kila siku na saa, mf.\n"
            "/hours mon-fri 09:00-17:00; sat 10:00-13:00"
        ),
        "sms": (
            "Sikuweza kusoma saa hizo; hakuna kilichobadilika. Mf. HOURS mon-fri 09:00-17:00; sat 10:00-13:00"
        ),
    },
    "hours_outside": {
        "default": (
            "Vikao hivi viko nje ya saa zako mpya. Vinabaki kama vilivyo: tafadhali wasiliana na "
            "wateja, au uombe ofisi ivighairi:"
        ),
        "sms": "Bado vimepangwa, nje ya saa zako mpya:",
    },
    "away_header": "Muda uliouzuia:",
    "away_none": "Hujazuia muda wowote ujao.",
    "away_usage": {
        "default": (
            "Kuzuia muda, gusa siku hapa chini au tuma, mf.\n"
            "/away 24 Des\n/away 24-26 Des\n/away 24 Des 14:00-17:00"
        ),
        "sms": "Kuzuia muda: AWAY 24 DES, AWAY 24-26 DES au AWAY 24 DES 14:00-17:00.",
    },
    "away_remove_hint": {
        "default": "Kurudisha muda huo kwa wateja, uguse hapa chini.",
        "sms": "Kuondoa mmoja, jibu namba yake.",
    },
    "away_remove_label": "Ondoa {span}",
    "away_span_days": "{first} hadi {last}",
    "away_span_part": "{day}, {start}-{end}",
    "away_saved": {
        "default": "Umezuia {span}. Wateja hawataonyeshwa nyakati hizo tena.",
        "sms": "Umezuia {span}. Hakuna miadi itakayopangwa wakati huo.",
    },
    "away_saved_kept": {
        "default": (
            "Umezuia {span}. Vikao hivi vinabaki: tafadhali wasiliana na wateja, au uombe ofisi ivighairi:"
        ),
        "sms": "Umezuia {span}. Vikao hivi vinabaki, tafadhali wasiliana na wateja:",
    },
    "away_clash": {
        "default": "Una vikao {count} vilivyopangwa {span}. Kuzuia muda hakuvighairi:",
        "sms": "Vikao {count} vimepangwa {span}; kuzuia hakuvighairi:",
    },
    "away_clash_line": "{reference} {when}",
    "away_clash_ask": {
        "default": (
            "Uzuie muda na vikao hivi vibaki? Kisha utawasiliana na wateja, au uombe ofisi ivighairi."
        ),
        "sms": "Uzuie hata hivyo na vikao vibaki?",
    },
    "away_not_saved": "Sawa, hakuna kilichozuiwa.",
    "away_covered": "{span} tayari umeuzuia.",
    "away_removed": "Umeondoa {span}. Wateja wanaweza kupanga nyakati hizo tena.",
    "away_remove_gone": "Muda huo ulishaondolewa.",
    "away_example": {
        "default": "Mfano: /away 24 Des, /away 24-26 Des, /away 24 Des 14:00-17:00",
        "sms": "Mf. AWAY 24 DES, AWAY 24-26 DES au AWAY 24 DES 14:00-17:00",
    },
    "away_unreadable": "Sikuweza kusoma tarehe hiyo; hakuna kilichozuiwa.",
    "away_no_date": "Tarehe hiyo haipo; hakuna kilichozuiwa.",
    "away_past": "Muda huo umeshapita; hakuna kilichozuiwa.",
    "away_too_far": "Hiyo ni zaidi ya mwaka mmoja mbele; hakuna kilichozuiwa.",
    "away_backwards": "Mwisho unakuja kabla ya mwanzo; hakuna kilichozuiwa.",
    "away_too_long": "Unaweza kuzuia siku {days} tu kwa mara moja; kwa zaidi, tafadhali uliza ofisi.",
    "away_times_one_day": (
        "Saa zinaweza kutolewa kwa siku moja tu; zuia siku nzima, au saa za kila siku peke yake."
    ),
    "away_bad_times": "Saa hizo hazifai: mwisho lazima uwe baada ya mwanzo (mf. 14:00-17:00).",
}
