"""The Kiswahili catalogue: the same keys and ``{field}`` names as :data:`core.dialog.messages.EN`.

Written as a Kenyan would text: plain, polite, short ("tafadhali", "samahani"), everyday
words over formal ones ("namba", "kikao", "miadi", "mtaalamu"). Discretion holds here too:
no word naming the kind of care ("tiba", "ushauri nasaha", "akili", "matibabu"); a session
is "kikao", a booking "miadi", a practitioner "mtaalamu". Commands and SMS keywords stay as
they are (BOOK and MIADI both work; see core/dialog/engine.py).

Other parts of the conversation keep their Kiswahili in their own module with the same
shape (e.g. ``SW_RESCHEDULE`` / ``LABELS_SW_RESCHEDULE``); they are folded in below with one
line each: ``SW = {**_SW_BASE, **SW_RESCHEDULE}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.dialog.messages_sw_calendar import LABELS_SW_CALENDAR, SW_CALENDAR
from core.dialog.messages_sw_reschedule import LABELS_SW_RESCHEDULE, SW_RESCHEDULE

Entry = str | Mapping[str, str]

_LABELS_SW_BASE: dict[str, str] = {
    "approve": "Kubali",
    "decline": "Kataa",
    "pay": "Lipa kwa M-Pesa",
    "retry": "Jaribu kulipa tena",
    "skip": "Ruka",
    "confirm": "Thibitisha",
    "cancel": "Ghairi",
    "share_phone": "Tuma namba yangu ya simu",
    "book": "Panga kikao",
    "my": "Vikao vyangu",
    "help": "Msaada",
    "more": "Zaidi",
    "change_phone": "Tumia namba nyingine",
    "dont_pay": "Hapana, usilipe",
    "cancel_booking": "Ghairi miadi",
    "yes_cancel": "Ndiyo, ighairi",
    "keep": "Iache ilivyo",
    "today": "Leo",
    "upcoming": "Vijavyo",
    "all": "Vikao vyote",
    "lang_en": "English",
    "lang_sw": "Kiswahili",
}

_SW_BASE: dict[str, Entry] = {
    # -- general --------------------------------------------------------------------------
    "welcome": {
        "default": "Karibu Smiling Steps! Naweza kukupangia kikao na kupokea malipo kwa M-Pesa.",
        "sms": "Karibu Smiling Steps.",
    },
    "menu": "Ungependa kufanya nini?",
    "help": {
        "default": (
            "Naweza kukusaidia hivi:\n"
            "/book - panga kikao\n"
            "/my - vikao vyako na malipo\n"
            "/pay - lipia kikao kilichokubaliwa\n"
            "/cancel - acha tunachofanya\n"
            "/language - Kiswahili au English\n"
            "/help - ujumbe huu"
        ),
        "sms": (
            "Smiling Steps: jibu MIADI kupanga kikao, ZANGU kuona vikao vyako, LIPA kulipa, "
            "ACHA kusimamisha, ENGLISH for English."
        ),
    },
    "help_step": {
        "default": "Tafadhali chagua mojawapo ya machaguo yaliyo hapo juu, au tuma /cancel kuacha.",
        "sms": "Tafadhali jibu kwa namba ya chaguo lako, au ACHA kusimamisha.",
    },
    "choose_number": "Tafadhali jibu kwa namba kati ya 1 na {count}.",
    "stopped": {
        "default": "Sawa, tumesitisha. Tuma /book wakati wowote ukitaka kuanza tena.",
        "sms": "Sawa, tumesitisha. Jibu MIADI wakati wowote ukitaka kuanza tena.",
    },
    "expired": "Mazungumzo yetu yaliisha baada ya dakika 30, kwa hivyo tuanze upya.",
    "stale_option": "Chaguo hilo ni la ujumbe wa awali na halitumiki tena.",
    "try_again": "Samahani, bado nilikuwa nashughulikia ujumbe wako uliopita. Tafadhali jaribu tena.",
    "error": "Samahani, kuna hitilafu upande wetu. Tafadhali jaribu tena baada ya muda mfupi.",
    "phone_noted": "Asante, nimehifadhi namba yako.",
    "reply_one": "Jibu 1",
    "or": "au",
    "reply_range": "Jibu 1-{last}",
    "language_menu": "Choose your language / Chagua lugha:",
    "language_set": "Sawa, nitakuandikia kwa Kiswahili.",
    "ics_summary": "Kikao cha Smiling Steps",
    "ics_summary_with": "Kikao cha Smiling Steps na {name}",
    "ics_description": "Jiunge: {url}\nKumbukumbu ya miadi: {reference}",
    "ics_reference": "Kumbukumbu ya miadi: {reference}",
    # -- booking ----------------------------------------------------------------------------
    "choose_therapist": "Ungependa kuonana na nani?",
    "choose_type": "Kikao cha aina gani?",
    "type_label": {"default": "{name} · dakika {minutes} · {price}", "sms": "{name} dak {minutes} {price}"},
    "choose_day": {
        "default": "Chagua siku (saa za Nairobi):",
        "sms": "Chagua siku:",
    },
    "choose_time": "Chagua saa ya kuanza {day}:",
    "no_therapists": "Samahani, hakuna anayepokea miadi sasa hivi. Tafadhali jaribu tena baadaye.",
    "no_types": "Samahani, hakuna kikao kinachoweza kupangwa sasa hivi. Tafadhali jaribu tena baadaye.",
    "no_days": "{therapist} hana nafasi katika siku 14 zijazo. Tafadhali chagua mtu mwingine.",
    "no_times": "Siku hiyo imejaa sasa hivi. Tafadhali chagua siku nyingine.",
    "ask_email": {
        "default": (
            "Ungependa maelekezo ya malipo na risiti yako kwa barua pepe? "
            "Andika anwani yako ya barua pepe, au chagua Ruka."
        ),
        "sms": "Andika barua pepe yako upate risiti, au chagua Ruka.",
    },
    "invalid_email": "Hiyo haionekani kuwa anwani ya barua pepe. Tafadhali iandike tena, au chagua Ruka.",
    "summary": {
        "default": (
            "Tafadhali kagua ombi lako:\n"
            "{session_type} (dakika {minutes}) na {therapist}\n"
            "{when}\n"
            "Bei: {price}\n"
            "Barua pepe: {email}\n"
            "Thibitisha ili tumtumie {therapist} akubali."
        ),
        "sms": "{session_type} na {therapist}, {when}, {price}. Thibitisha?",
    },
    "no_email": "hakuna",
    "booking_sent": {
        "default": (
            "Ombi limetumwa (kumb. {reference}). {therapist} ataliangalia hivi karibuni; likikubaliwa "
            "utapata ujumbe wa kulipa {price} kwa M-Pesa."
        ),
        "sms": "Ombi {reference} limetumwa. Likikubaliwa tutakutumia ujumbe ulipe {price} kwa M-Pesa.",
    },
    "slot_taken": "Samahani, saa hiyo imechukuliwa sasa hivi. Tafadhali chagua saa nyingine.",
    "slot_gone": "Samahani, saa hiyo haipatikani tena. Tafadhali chagua nyingine.",
    "booking_dropped": "Sawa, hakuna miadi iliyowekwa.",
    # -- my sessions --------------------------------------------------------------------------
    "my_none": {
        "default": "Huna vikao vijavyo. Tuma /book kupanga kimoja.",
        "sms": "Huna vikao vijavyo. Jibu MIADI kupanga kimoja.",
    },
    "my_header": "Vikao vyako:",
    "my_line": {
        "default": "{reference}: {session_type} na {therapist}, {when}.\n{status}",
        "sms": "{reference} {when}: {status}",
    },
    "status_PENDING_APPROVAL": "Kinasubiri kukubaliwa.",
    "status_APPROVED": "Kimekubaliwa, bado hakijalipwa ({price}).",
    "status_CONFIRMED": "Kimelipwa na kuthibitishwa (M-Pesa {receipt}).",
    "status_COMPLETED": "Kimekamilika.",
    "status_DECLINED": "Kimekataliwa.",
    "status_CANCELLED": "Kimeghairiwa.",
    "status_EXPIRED": "Muda wake umeisha.",
    "pay_state_AWAITING_CUSTOMER": "Ombi la M-Pesa linasubiri kwenye simu yako.",
    "pay_state_QUEUED": "M-Pesa haikujibu; tunajaribu tena.",
    "pay_state_UNCLEAR": "Tunathibitisha malipo ya mwisho na M-Pesa.",
    "pay_state_FAILED": "Jaribio la mwisho la kulipa halikufaulu.",
    "pay_state_CANCELLED": "Jaribio la mwisho la kulipa lilisitishwa.",
    "pay_state_TIMED_OUT": (
        "Ombi la mwisho la M-Pesa lilichelewa. Kama ulipata SMS ya M-Pesa ya kuthibitisha, umelipa; "
        "la sivyo chagua Jaribu kulipa tena."
    ),
    "pay_state_NEEDS_REVIEW": "Tunakagua malipo yako; tafadhali usilipe tena.",
    # -- paying ------------------------------------------------------------------------------------
    "test_mark": "[TEST MODE] ",  # the same marker in every language (Property 78; admins search it)
    "nothing_to_pay": {
        "default": "Huna kikao kilichokubaliwa kinachosubiri malipo. Tuma /my kuona vikao vyako.",
        "sms": "Huna kikao kilichokubaliwa kinachosubiri malipo. Jibu ZANGU kuona vikao vyako.",
    },
    "choose_booking_to_pay": "Ungependa kulipia kikao kipi?",
    "pay_which_line": "{reference}: {when}, {price}",
    "ask_phone": {
        "default": (
            "Namba gani ya M-Pesa ilipe {price} kwa {reference}? "
            "Iandike (mfano 0712 345 678) au chagua namba hapa chini."
        ),
        "sms": "Namba gani ya M-Pesa ilipe {price} kwa {reference}? Iandike au chagua:",
    },
    "test_number_hint": "Namba ya majaribio ya Safaricom 254708374149 imewekwa kwa majaribio.",
    "invalid_phone": "Hiyo si namba ya simu ya Kenya. Tumia mojawapo ya: {formats}.",
    "not_safaricom": (
        "Kumbuka: {phone} huenda si laini ya Safaricom, na maombi ya M-Pesa hufika kwa namba za "
        "Safaricom tu. Tunajaribu hata hivyo."
    ),
    "check_phone": {
        "default": (
            "Angalia simu yako: ombi la M-Pesa la {price} (kumb. {reference}) limetumwa kwa {phone}. "
            "Weka PIN yako ya M-Pesa hapo ili ulipe. Hatutawahi kukuuliza PIN yako hapa."
        ),
        "sms": "Angalia simu: ombi la M-Pesa la {price} (kumb. {reference}) limetumwa kwa {phone}. "
        "Weka PIN yako.",
    },
    "already_waiting": (
        "Ombi la M-Pesa la {reference} tayari linasubiri kwenye {phone}. Tafadhali angalia simu yako."
    ),
    "retrying": "Tunatuma ombi la M-Pesa tena kwa {phone}.",
    "pay_queued": (
        "M-Pesa haijibu sasa hivi. Hakuna pesa iliyokatwa; "
        "tutatuma ombi tena baada ya sekunde {seconds}."
    ),
    "pay_unclear": (
        "Tumetuma ombi, lakini M-Pesa haijathibitisha kuwa limefika kwa {phone}. Ombi likitokea, "
        "weka PIN yako; tunakagua na M-Pesa na tutakujulisha matokeo."
    ),
    "pay_failed_now": "M-Pesa haikukubali ombi. Hakuna pesa iliyokatwa; tafadhali jaribu tena.",
    "pay_already_paid": "{reference} tayari imelipwa.",
    "pay_not_approved": "{reference} itaweza kulipwa ikishakubaliwa.",
    "pay_not_payable": "{reference} haiwezi kulipwa tena.",
    "pay_not_found": "Sikupata kikao hicho.",
    "pay_unavailable": "Hatukuweza kuanza malipo sasa hivi. Hakuna pesa iliyokatwa; tafadhali jaribu tena.",
    "pay_busy": "Malipo ya kikao hiki yanaanza tayari. Tafadhali subiri kidogo.",
    "pay_which_number": "Lipa {price} kwa {reference} kutoka namba gani?",
    "pay_same_number": "Namba ile ile ({phone})",
    "pay_confirm_number": {
        "default": (
            "Ulipe {price} kwa {reference} kutoka {phone}? Malipo yako ya mwisho ya M-Pesa yalitumia {last}."
        ),
        "sms": "Ulipe {price} kwa {reference} kutoka {phone}? Mara ya mwisho ulitumia {last}.",
    },
    "pay_from_number": "Ndiyo, lipa kutoka {phone}",
    "pay_number_declined": {
        "default": "Sawa, hakuna ombi la malipo lililotumwa. Tuma /pay ukiwa tayari.",
        "sms": "Sawa, hakuna ombi la malipo lililotumwa. Jibu LIPA ukiwa tayari.",
    },
    "pay_change_live": (
        "Ombi la M-Pesa lililotumwa kwa {phone} bado liko wazi. Kama ni simu isiyo sahihi, subiri "
        "muda wake uishe (kama dakika 2) kisha uchague Tumia namba nyingine."
    ),
    # -- cancelling a booking ----------------------------------------------------------------------------
    "cancel_confirm": "Ghairi {reference} ya {when}?",
    "cancel_confirm_paid": {
        "default": (
            "Ghairi {reference} ya {when}? Umelipa {price}; "
            "ukighairi, tutapanga kukurudishia pesa."
        ),
        "sms": "Ghairi {reference} ya {when}? Tutapanga kukurudishia {price}.",
    },
    "cancel_done": "{reference} imeghairiwa.",
    "cancel_done_refund": {
        "default": (
            "{reference} imeghairiwa. Tutapanga kukurudishia {price} yako "
            "(M-Pesa {receipt})."
        ),
        "sms": "{reference} imeghairiwa. Tutapanga kukurudishia {price}.",
    },
    "cancel_kept": "Sawa, miadi yako inabaki kama ilivyo.",
    "cancel_not_allowed": "{reference} haiwezi kughairiwa hapa tena. Tafadhali wasiliana nasi.",
    "cancel_paid_not_allowed": (
        "{reference} imelipwa, kwa hivyo haiwezi kughairiwa hapa. Tafadhali wasiliana nasi."
    ),
    "cancel_too_late": (
        "Vikao vilivyolipwa vinaweza kughairiwa hapa hadi {window} kabla ya kuanza, kwa hivyo "
        "{reference} haiwezi kughairiwa hapa tena. Tafadhali wasiliana nasi."
    ),
    "one_hour": "saa 1",
    "hours": "saa {count}",
    "cancel_payment_live": "Malipo ya {reference} yanaendelea; tafadhali subiri yamalizike.",
    # -- practitioners -------------------------------------------------------------------------------------
    "linked": "Karibu, {name}! Akaunti yako ya Telegram sasa imeunganishwa. Maombi ya miadi yatafika hapa.",
    "link_invalid": "Kiungo hicho si sahihi au kimeshatumika. Tafadhali omba kipya.",
    "link_taken": "Akaunti hii ya Telegram tayari imeunganishwa na mtaalamu mwingine.",
    "dashboard": {
        "default": (
            "Habari {name}. Leo: vikao {today}, {paid} vimelipwa. Vinasubiri ukubali: {pending}."
        ),
        "sms": "Habari {name}. Leo: {today}, {paid} vimelipwa. Kukubali: {pending}.",
    },
    "therapist_help": {
        "default": (
            "/today - vikao vya leo\n/upcoming - vikao vijavyo\n/sessions - vikao vyote\n"
            "Kubali au kataa kila ombi kwa vitufe vyake."
        ),
        "sms": "Jibu TODAY, UPCOMING au ALL kuona vikao. Kubali kwa A<code>, kataa kwa D<code>.",
    },
    "request_card": {
        "default": "Ombi {reference}: {client}, {session_type} (dakika {minutes}), {when}, {price}.",
        "sms": "{reference}: {client}, {when}. Jibu A{code} kukubali au D{code} kukataa.",
    },
    "sessions_today": "Vikao vya leo:",
    "sessions_upcoming": "Vikao vijavyo:",
    "sessions_all": "Vikao vyote:",
    "sessions_none": "Hakuna vikao.",
    "session_line": {
        "default": "{mark} {when} · {client} · {session_type} · {status}{receipt} · {reference}",
        "sms": "{mark} {when}, {client}, {status}{receipt}",
    },
    "mark_paid": "[IMELIPWA]",
    "mark_unpaid": "[HAIJALIPWA]",
    "receipt_part": {"default": " · M-Pesa {receipt}", "sms": ", M-Pesa {receipt}"},
    "tstatus_PENDING_APPROVAL": "inasubiri ukubali",
    "tstatus_APPROVED": "imekubaliwa, inasubiri malipo",
    "tstatus_CONFIRMED": "imethibitishwa",
    "tstatus_COMPLETED": "imekamilika",
    "tstatus_DECLINED": "imekataliwa",
    "tstatus_CANCELLED": "imeghairiwa",
    "tstatus_EXPIRED": "muda umeisha",
    "approved_done": "Umekubali {reference}. {client} ameombwa alipe.",
    "declined_done": "Umekataa {reference}. {client} amejulishwa.",
    "client_unnamed": "Mteja",
    "the_client": "Mteja",
    "already_approved": "{reference} tayari imekubaliwa; hakuna zaidi la kufanya.",
    "already_declined": "{reference} ilikataliwa tayari.",
    "not_pending": "{reference} haisubiri kukubaliwa tena.",
    "request_not_found": "Sikupata ombi hilo.",
    "unknown_code": "Hakuna ombi lenye namba {code} linalokusubiri.",
    "too_late": "{reference} haiwezi kukubaliwa tena: muda wake wa kuanza umepita.",
    # -- Telegram adapter (bot/) ---------------------------------------------------------------------
    "tg_command_start": "Anza, au rudi kwenye menyu kuu",
    "tg_command_book": "Panga kikao",
    "tg_command_sessions": "Miadi yako na hali ya malipo",
    "tg_command_pay": "Lipia miadi iliyokubaliwa kwa M-Pesa",
    "tg_command_cancel": "Acha unachofanya, au ghairi miadi",
    "tg_command_help": "Bot hii inaweza kufanya nini",
    "tg_command_language": "Kiswahili au English",
    "tg_command_today": "Vikao vya leo",
    "tg_command_upcoming": "Vikao vijavyo na maombi",
    "tg_own_number_only": (
        'Kwa usalama wako naweza kutumia namba yako mwenyewe tu. Bonyeza "Tuma namba yangu ya simu" '
        "au andika namba ya M-Pesa unayotaka kulipa nayo."
    ),
    "tg_text_only": "Naweza kusoma ujumbe wa maandishi na vitufe tu. Tuma /help kuona ninachoweza kufanya.",
    "tg_type_number_note": "Unaweza pia kuandika namba, mfano 0712 345 678.",
    "tg_share_other": "Au tuma namba nyingine: bonyeza kitufe hapa chini, au iandike.",
    "tg_more_options": "Chagua:",
    "tg_progress_queued": "⏳ Tunawasiliana na M-Pesa… sekunde {seconds}",
    "tg_progress_unclear": "⏳ Tunathibitisha malipo na M-Pesa… sekunde {seconds}",
    "tg_progress_waiting": "⏳ Tunasubiri uthibitishe kwenye simu yako… sekunde {seconds}",
    "tg_progress_overdue": (
        "⏳ M-Pesa haijajibu bado. Tunakagua malipo na M-Pesa na tutasasisha "
        "ujumbe huu. Tafadhali usilipe tena kwa sasa."
    ),
    "tg_progress_paid": (
        "✅ Malipo yamepokelewa: {price}.\nRisiti ya M-Pesa: {receipt}\nKikao chako kimethibitishwa."
    ),
    "tg_progress_paid_no_receipt": "✅ Malipo yamepokelewa: {price}.\nKikao chako kimethibitishwa.",
    "tg_progress_needs_review": (
        "⚠️ Tunahitaji kukagua malipo haya kwa mkono. Tafadhali usilipe tena; tutakuandikia hapa."
    ),
    "tg_progress_failed": "❌ {reason}",
    "tg_progress_failed_generic": "Malipo hayakufaulu. Unaweza kujaribu tena sasa.",
    "tg_progress_failed_see_notice": (
        "❌ Malipo haya hayakufaulu; unachoweza kufanya ni katika ujumbe ulio hapa chini."
    ),
}

# The payment service's sentences for the client (core/mpesa/result_codes.py,
# core/services/payments/initiate.py), keyed by the English sentence: they travel as data
# ("reason") into the failure notice and the progress message, and are put into the
# reader's language where those are rendered. A test checks every English sentence has one.
REASONS_SW: dict[str, str] = {
    "Payment received. Thank you!": "Malipo yamepokelewa. Asante!",
    "Your M-Pesa balance was not enough for this payment. Please top up M-Pesa, then retry.": (
        "Salio lako la M-Pesa halikutosha kwa malipo haya. Tafadhali ongeza pesa kwenye M-Pesa, "
        "kisha ujaribu tena."
    ),
    "Payment cancelled. You can retry whenever you are ready.": (
        "Malipo yamesitishwa. Unaweza kujaribu tena ukiwa tayari."
    ),
    (
        "We did not get an answer from your phone in time. Check your M-Pesa messages; "
        "if no money left your account, retry."
    ): (
        "Hatukupata jibu kutoka kwa simu yako kwa wakati. Angalia ujumbe wako wa M-Pesa; "
        "kama hakuna pesa iliyotoka, jaribu tena."
    ),
    "The M-Pesa PIN entered was not correct. Please retry and enter the right PIN.": (
        "PIN ya M-Pesa uliyoweka si sahihi. Tafadhali jaribu tena na uweke PIN sahihi."
    ),
    (
        "Another M-Pesa request is already open on your phone. Please finish or close "
        "it, wait a minute, then retry."
    ): (
        "Kuna ombi lingine la M-Pesa wazi kwenye simu yako. Tafadhali limalize au ulifunge, "
        "subiri dakika moja, kisha ujaribu tena."
    ),
    "M-Pesa is not answering right now. Nothing was charged; please retry later.": (
        "M-Pesa haijibu sasa hivi. Hakuna pesa iliyokatwa; tafadhali jaribu tena baadaye."
    ),
    "M-Pesa did not accept the request. Nothing was charged; please retry.": (
        "M-Pesa haikukubali ombi. Hakuna pesa iliyokatwa; tafadhali jaribu tena."
    ),
    "M-Pesa could not complete the payment just now. Please retry in a few minutes.": (
        "M-Pesa haikuweza kukamilisha malipo sasa hivi. Tafadhali jaribu tena baada ya dakika chache."
    ),
    (
        "The payment did not go through. Check your M-Pesa messages; if no money left your "
        "account, retry. Contact us if it keeps happening."
    ): (
        "Malipo hayakufaulu. Angalia ujumbe wako wa M-Pesa; kama hakuna pesa iliyotoka, "
        "jaribu tena. Wasiliana nasi tatizo likiendelea."
    ),
}

SW: dict[str, Entry] = {**_SW_BASE, **SW_RESCHEDULE, **SW_CALENDAR}
LABELS_SW: dict[str, str] = {**_LABELS_SW_BASE, **LABELS_SW_RESCHEDULE, **LABELS_SW_CALENDAR}
