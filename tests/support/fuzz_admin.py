"""Generated /admin form posts for the fuzzing of issue 14 (tests and bench/fuzz.py share them).

Each case is a form for one admin page with its fields present, missing or hostile, a few unknown
fields, and the session's CSRF token right, wrong or missing. ``send`` posts it with the signed-in
session of a ``LiveApp`` (the login form from a fresh browser instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from hypothesis import strategies as st

from admin_web.views.practitioners import ADD_FIELDS, CHANGES
from core.services.settings.mpesa import FIELDS as MPESA_FIELDS
from tests.support.fuzz import ADMIN_PASSWORD, ADMIN_USER, Answer, LiveApp, admin_forms, hostile_text

# A failed sign-in is recorded on purpose (rate limit, security audit): not a "changed row".
SIGN_IN_RECORDS = frozenset({"admin_login_failures", "audit_entries"})
STATEMENT_HEADER = ("Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
                    "Other Party Info")

ids = st.one_of(st.integers(-5, 10**12).map(str), hostile_text)
csrf_variants = st.sampled_from(["right", "right", "right", "missing", "wrong"])
environments = st.sampled_from(["sandbox", "production", "simulator"])


@dataclass(frozen=True)
class AdminCase:
    """One admin form post: where, the fields, which CSRF token, and a statement file if any."""

    path: str
    form: dict[str, str]
    csrf: str = "right"
    statement: bytes | None = None


def segment(value: str) -> str:
    """One URL path segment; a lone surrogate goes as the bytes it stands for (%ED%A0%80)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _utf8(form: dict[str, str]) -> dict[str, str]:
    """aiohttp cannot encode lone surrogates; a browser would send U+FFFD for them."""
    def fix(value: str) -> str:
        return value.encode("utf-8", "replace").decode()
    return {fix(k): fix(v) for k, v in form.items()}


login_cases = admin_forms({
    "username": st.sampled_from([ADMIN_USER, "nobody"]),
    "password": st.sampled_from([ADMIN_PASSWORD + "x", ""]),  # never the right one
    "next": hostile_text,
}).map(lambda form: AdminCase("/admin/login", form))

review_cases = st.builds(
    AdminCase, ids.map(lambda i: "/admin/review/" + segment(i)),
    admin_forms({"action": st.sampled_from(["dismiss", "refunded", "confirm_booking", "resolve"]),
                 "note": hostile_text, "refund_reference": hostile_text, "receipt": hostile_text}),
    csrf_variants,
)

settings_cases = st.builds(
    AdminCase, st.sampled_from(["/admin/settings/mpesa", "/admin/settings/test-connection"]),
    admin_forms({**{name: hostile_text for name in MPESA_FIELDS}, "environment": environments,
                 "current_password": st.sampled_from([ADMIN_PASSWORD, "wrong"])}),
    csrf_variants,
)

_csv_rows = st.lists(st.lists(hostile_text, min_size=1, max_size=8), max_size=6).map(
    lambda rows: "\n".join([STATEMENT_HEADER, *(",".join(row) for row in rows)]).encode("utf-8", "replace"))
statement_cases = st.builds(
    AdminCase, st.just("/admin/reconciliation"),
    admin_forms({"environment": environments, "use_query": st.just("on")}),
    csrf_variants, st.one_of(_csv_rows, _csv_rows, st.binary(max_size=500)),
)

practitioner_cases = st.builds(
    AdminCase,
    st.one_of(st.just("/admin/practitioners"), ids.map(lambda i: "/admin/practitioners/" + segment(i))),
    admin_forms({**{name: hostile_text for name in ADD_FIELDS}, "action": st.sampled_from(sorted(CHANGES))}),
    csrf_variants,
)

forget_cases = st.builds(
    AdminCase, ids.map(lambda i: "/admin/clients/" + segment(i) + "/forget"),
    admin_forms({"confirm": st.sampled_from(["yes", "no"])}), csrf_variants,
)

ADMIN_FORMS: dict[str, st.SearchStrategy[AdminCase]] = {
    "admin review": review_cases,
    "admin settings": settings_cases,
    "admin reconciliation": statement_cases,
    "admin practitioners": practitioner_cases,
    "admin clients forget": forget_cases,
}


def send(app: LiveApp, case: AdminCase) -> Answer:
    """Post ``case`` as the signed-in admin (the login form: from a fresh browser)."""
    if case.path == "/admin/login":
        return app.login_attempt(_utf8(case.form))
    form = {k: v for k, v in _utf8(case.form).items() if k != "csrf_token"}
    if case.csrf == "right":
        form["csrf_token"] = app.csrf
    elif case.csrf == "wrong":
        form["csrf_token"] = "x" + app.csrf[1:]
    if case.statement is None:
        return app.post_form(case.path, form)
    data = aiohttp.FormData()
    for key, value in form.items():
        if key.isascii() and key.isprintable() and key.strip() and '"' not in key:  # a name a browser sends
            data.add_field(key, value)
    data.add_field("statement", case.statement, filename="statement.csv", content_type="text/csv")
    return app.post_form(case.path, data)
