"""Hypothesis-generated form posts against every /admin form (issue 14, fuzzing and abuse).

A signed-in admin (a real session cookie and its CSRF token) posts generated forms
(tests/support/fuzz_admin.py) to login, review, settings, reconciliation (statement upload),
practitioners and clients' forget on the whole application served on 127.0.0.1. Invariants: no
5xx, no changed row when the form was refused, /healthz answers and the admin is still signed in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import BACKENDS
from tests.support.fuzz import LiveApp, Tally, check_case, serve_for_module
from tests.support.fuzz_admin import (
    SIGN_IN_RECORDS,
    AdminCase,
    forget_cases,
    login_cases,
    practitioner_cases,
    review_cases,
    send,
    settings_cases,
    statement_cases,
)

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    yield from serve_for_module(request, tmp_path_factory)


def _holds(app: LiveApp, case: AdminCase) -> None:
    tally = Tally()
    check_case(app, lambda: send(app, case), tally, case.path)
    assert tally.violations == []
    assert app.healthy()
    assert app.get("/admin/", admin=True).status == 200, "the admin was signed out"


@FUZZ
@given(case=login_cases)
def test_the_login_form_never_answers_5xx_and_signs_in_nobody(app: LiveApp, case: AdminCase) -> None:
    tally = Tally()
    answer = check_case(app, lambda: send(app, case), tally, "login", SIGN_IN_RECORDS)
    assert tally.violations == []
    assert answer.status != 303, "signed in with a wrong password"


@FUZZ
@given(case=review_cases)
def test_review_decisions_never_answer_5xx_or_change_rows_when_refused(app: LiveApp, case: AdminCase) -> None:
    _holds(app, case)


@FUZZ
@given(case=settings_cases)
def test_settings_forms_never_answer_5xx_or_change_rows_when_refused(app: LiveApp, case: AdminCase) -> None:
    _holds(app, case)


@FUZZ
@given(case=statement_cases)
def test_statement_uploads_never_answer_5xx_or_change_rows_when_refused(
    app: LiveApp, case: AdminCase
) -> None:
    _holds(app, case)


@FUZZ
@given(case=practitioner_cases)
def test_practitioner_forms_never_answer_5xx_or_change_rows_when_refused(
    app: LiveApp, case: AdminCase
) -> None:
    _holds(app, case)


@FUZZ
@given(case=forget_cases)
def test_forgetting_a_client_never_answers_5xx_or_changes_rows_when_refused(
    app: LiveApp, case: AdminCase
) -> None:
    _holds(app, case)
