"""Hypothesis-generated form posts against every /admin form (issue 14, fuzzing and abuse).

A signed-in admin (a real session cookie and its CSRF token) posts generated forms to login,
review, settings, reconciliation (statement upload), practitioners and clients' forget on the
whole application served on 127.0.0.1. Invariants: no 5xx, no changed row when the form was
refused, /healthz answers and the admin is still signed in afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_web.views.practitioners import ADD_FIELDS, CHANGES
from core.services.settings.mpesa import FIELDS as MPESA_FIELDS
from tests.conftest import BACKENDS
from tests.support.fuzz import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    LiveApp,
    Tally,
    admin_forms,
    check_case,
    hostile_text,
    serve_for_module,
)

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A failed sign-in is recorded on purpose (rate limit, security audit): not a "changed row".
SIGN_IN_RECORDS = frozenset({"admin_login_failures", "audit_entries"})
ids = st.one_of(st.integers(-5, 10**12).map(str), hostile_text)
csrf_variants = st.sampled_from(["right", "right", "right", "missing", "wrong"])


@pytest.fixture(scope="module", params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    yield from serve_for_module(request, tmp_path_factory)


def _with_csrf(app: LiveApp, form: dict[str, str], which: str) -> dict[str, str]:
    form = {k: v for k, v in form.items() if k != "csrf_token"}
    if which == "right":
        form["csrf_token"] = app.csrf
    elif which == "wrong":
        form["csrf_token"] = "x" + app.csrf[1:]
    return form


def _segment(value: str) -> str:
    """One URL path segment; a lone surrogate goes as the bytes it stands for (%ED%A0%80)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _utf8(form: dict[str, str]) -> dict[str, str]:
    """aiohttp cannot encode lone surrogates; a browser would send U+FFFD for them."""
    def fix(value: str) -> str:
        return value.encode("utf-8", "replace").decode()
    return {fix(k): fix(v) for k, v in form.items()}


def _check(app: LiveApp, path: str, form: dict[str, str] | aiohttp.FormData, label: str,
           skip: frozenset[str] = frozenset()) -> None:
    tally = Tally()
    check_case(app, lambda: app.post_form(path, form), tally, label, skip)
    assert tally.violations == []
    assert app.healthy()
    assert app.get("/admin/", admin=True).status == 200, "the admin was signed out"


@FUZZ
@given(form=admin_forms({"username": st.sampled_from([ADMIN_USER, "nobody"]),
                         "password": st.sampled_from([ADMIN_PASSWORD + "x", ""]), "next": hostile_text}))
def test_the_login_form_never_answers_5xx_and_signs_in_nobody(app: LiveApp, form: dict[str, str]) -> None:
    tally = Tally()
    answer = check_case(app, lambda: app.login_attempt(_utf8(form)), tally, "login", SIGN_IN_RECORDS)
    assert tally.violations == []
    assert answer.status != 303, "signed in with a wrong password"


@FUZZ
@given(item=ids, form=admin_forms({"action": st.sampled_from(["dismiss", "refunded", "paid", "resolve"]),
                                   "note": hostile_text, "refund_reference": hostile_text,
                                   "receipt": hostile_text}), csrf=csrf_variants)
def test_review_decisions_never_answer_5xx_or_change_rows_when_refused(
    app: LiveApp, item: str, form: dict[str, str], csrf: str
) -> None:
    path = "/admin/review/" + _segment(item)
    _check(app, path, _utf8(_with_csrf(app, form, csrf)), "review")


@FUZZ
@given(form=admin_forms({**{name: hostile_text for name in MPESA_FIELDS},
                         "environment": st.sampled_from(["sandbox", "production", "simulator"]),
                         "current_password": st.sampled_from([ADMIN_PASSWORD, "wrong"])}),
       csrf=csrf_variants,
       target=st.sampled_from(["/admin/settings/mpesa", "/admin/settings/test-connection"]))
def test_settings_forms_never_answer_5xx_or_change_rows_when_refused(
    app: LiveApp, form: dict[str, str], csrf: str, target: str
) -> None:
    _check(app, target, _utf8(_with_csrf(app, form, csrf)), "settings")


csv_cells = st.lists(st.lists(hostile_text, min_size=1, max_size=8), max_size=6)


@FUZZ
@given(rows=csv_cells, raw=st.one_of(st.none(), st.binary(max_size=500)), csrf=csrf_variants,
       form=admin_forms({"environment": st.sampled_from(["sandbox", "production", "simulator"]),
                         "use_query": st.just("on")}))
def test_statement_uploads_never_answer_5xx_or_change_rows_when_refused(
    app: LiveApp, rows: list[list[str]], raw: bytes | None, csrf: str, form: dict[str, str]
) -> None:
    header = ("Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
              "Other Party Info")
    text = "\n".join([header, *(",".join(row) for row in rows)])
    statement = raw if raw is not None else text.encode("utf-8", "replace")
    data = aiohttp.FormData()
    for key, value in _utf8(_with_csrf(app, form, csrf)).items():
        if key.isascii() and key.isprintable() and key.strip() and '"' not in key:  # a name a browser sends
            data.add_field(key, value)
    data.add_field("statement", statement, filename="statement.csv", content_type="text/csv")
    _check(app, "/admin/reconciliation", data, "reconciliation")


@FUZZ
@given(target=st.one_of(st.just("/admin/practitioners"), ids.map(lambda i: f"/admin/practitioners/{i}")),
       form=admin_forms({**{name: hostile_text for name in ADD_FIELDS},
                         "action": st.sampled_from(sorted(CHANGES))}), csrf=csrf_variants)
def test_practitioner_forms_never_answer_5xx_or_change_rows_when_refused(
    app: LiveApp, target: str, form: dict[str, str], csrf: str
) -> None:
    target = target.split("?")[0].split("#")[0]
    path = quote(target.encode("utf-8", "surrogatepass"), safe="/%")
    _check(app, path, _utf8(_with_csrf(app, form, csrf)), "practitioners")


@FUZZ
@given(client=ids, form=admin_forms({"confirm": st.sampled_from(["yes", "no"])}), csrf=csrf_variants)
def test_forgetting_a_client_never_answers_5xx_or_changes_rows_when_refused(
    app: LiveApp, client: str, form: dict[str, str], csrf: str
) -> None:
    path = "/admin/clients/" + _segment(client) + "/forget"
    _check(app, path, _utf8(_with_csrf(app, form, csrf)), "clients forget")
