"""Hypothesis-generated requests against every public webhook (issue 14, fuzzing and abuse).

One whole application (local mode, bot attached, stand-ins mounted) serves the module on a real
127.0.0.1 port. Bodies come from tests/support/fuzz.py: real Daraja and Africa's Talking shapes
with mutated types, values and nesting, raw bytes, wrong content types, oversized and deeply
nested bodies. Invariants for every case: no 5xx, no changed row when the request was refused,
/healthz still answers. The hand-written hostile cases are in test_hostile_input.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import BACKENDS
from tests.support.fuzz import (
    AT_SECRET,
    LIVE_CHECKOUT_ID,
    LNM_SECRET,
    TELEGRAM_SECRET,
    Body,
    LiveApp,
    Tally,
    check_case,
    serve_for_module,
    sms_delivery_bodies,
    sms_inbound_bodies,
    stk_bodies,
    stk_bodies_for,
    telegram_bodies,
)

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    yield from serve_for_module(request, tmp_path_factory)


def _holds(app: LiveApp, tally: Tally) -> None:
    assert tally.violations == []
    assert app.healthy()


@FUZZ
@given(body=stk_bodies_for(LIVE_CHECKOUT_ID))
def test_stk_callbacks_on_the_live_attempts_secret_never_get_a_5xx_or_change_rows_when_refused(
    app: LiveApp, body: Body
) -> None:
    tally = Tally()
    check_case(app, lambda: app.post(f"/hooks/lnm/{LNM_SECRET}", body), tally, "lnm valid secret")
    _holds(app, tally)


@FUZZ
@given(body=stk_bodies())
def test_stk_callbacks_with_an_unknown_secret_are_refused_and_change_nothing(
    app: LiveApp, body: Body
) -> None:
    tally = Tally()
    send = lambda: app.post("/hooks/lnm/not-a-secret-of-ours", body)  # noqa: E731
    answer = check_case(app, send, tally, "lnm bad secret")
    _holds(app, tally)
    assert answer.status < 500


@FUZZ
@given(body=sms_inbound_bodies())
def test_inbound_sms_posts_never_get_a_5xx_or_change_rows_when_refused(app: LiveApp, body: Body) -> None:
    tally = Tally()
    check_case(app, lambda: app.post(f"/hooks/sms/{AT_SECRET}/inbound", body), tally, "sms inbound")
    _holds(app, tally)


@FUZZ
@given(body=sms_delivery_bodies())
def test_sms_delivery_reports_never_get_a_5xx_or_change_rows_when_refused(app: LiveApp, body: Body) -> None:
    tally = Tally()
    check_case(app, lambda: app.post(f"/hooks/sms/{AT_SECRET}/delivery", body), tally, "sms delivery")
    _holds(app, tally)


@FUZZ
@given(body=sms_inbound_bodies())
def test_sms_posts_with_a_wrong_secret_are_refused_and_change_nothing(
    app: LiveApp, body: Body
) -> None:
    tally = Tally()
    send = lambda: app.post("/hooks/sms/wrong-secret/inbound", body)  # noqa: E731
    answer = check_case(app, send, tally, "sms bad secret")
    _holds(app, tally)
    assert 400 <= answer.status < 500


@FUZZ
@given(body=telegram_bodies())
def test_telegram_updates_never_get_a_5xx_or_change_rows_when_refused(app: LiveApp, body: Body) -> None:
    tally = Tally()
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    check_case(app, lambda: app.post("/hooks/telegram", body, headers=headers), tally, "telegram")
    _holds(app, tally)


@FUZZ
@given(body=telegram_bodies())
def test_telegram_updates_with_a_wrong_secret_are_refused_and_change_nothing(
    app: LiveApp, body: Body
) -> None:
    tally = Tally()
    headers = {"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"}
    send = lambda: app.post("/hooks/telegram", body, headers=headers)  # noqa: E731
    answer = check_case(app, send, tally, "telegram bad")
    _holds(app, tally)
    assert answer.status == 403
