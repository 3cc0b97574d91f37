"""Property-based: whatever arrives at whatever step, the engine answers and never fails."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.dialog import messages
from core.dialog.sms import render_sms
from core.dialog.types import OPTION_VALUE_MAX_BYTES, Inbound, Reply
from core.runtime import build_runtime
from core.templates.gsm import contains_forbidden
from tests.conftest import make_settings
from tests.integration.test_dialog_support import Chat, build_world

KEYWORDS = [
    "BOOK",
    " book\n",
    "/start",
    "/start nonsense-code",
    "/start book",
    "MY",
    "my sessions",
    "PAY",
    "/pay",
    "STOP",
    "cancel",
    "/cancel",
    "help",
    "/help",
    "/today",
    "today",
    "/upcoming",
    "/sessions",
    "all",
    "Skip",
    "Confirm",
    "A23456",
    "d 7K3Q9",
    "0708374149",
    "+254 708-374-149",
    "0812345678",
    "x@y.z",
    "1",
    "2",
    "3",
    "9",
    "0",
    "01",
    "999",
    "",
    " ",
    "\n",
]
OPTIONS = [
    "v1:book",
    "v1:my",
    "v1:help",
    "v1:pay",
    "v1:pay:1",
    "v1:pay:abc",
    "v1:pay:99999999999999",
    "v1:approve:1",
    "v1:decline:1",
    "v1:cxl:1",
    "v1:chphone:1",
    "v1:ts:all",
    "v1:ts:nope",
    "v1:th:zzzz:1",
    "v1:tm:zzzz:202601010700",
    "v1:dy:zzzz:20260230",
    "v1:ok:zzzz:yes",
    "v1:",
    "v1::",
    "pay:1",
    "approve:x",
    "tel:254708374149",
    "v2:book",
    ":" * 70,
]

texts = st.one_of(st.sampled_from(KEYWORDS), st.text(max_size=120), st.from_regex(r"\A\d{1,3}\Z"))
options = st.one_of(
    st.sampled_from(OPTIONS),
    st.text(max_size=90),
    st.builds(
        lambda k, n: f"v1:{k}:{n}",
        st.sampled_from(["pay", "approve", "decline", "cxl", "chphone"]),
        st.integers(min_value=-5, max_value=10**6),
    ),
)
inbound_fields = st.one_of(
    texts.map(lambda t: {"text": t}),
    options.map(lambda o: {"option": o}),
    st.sampled_from(["0722000111", "garbage", "+254 111 222 333"]).map(lambda p: {"contact_phone": p}),
)


def test_arbitrary_input_at_any_step_always_gets_a_proper_answer(database_url: str) -> None:
    users = itertools.count(1)
    with asyncio.Runner() as runner:
        runtime = build_runtime(make_settings(database_url))
        world = runner.run(build_world(runtime))
        error_texts = {messages.say("error", "telegram"), messages.say("error", "sms")}

        @settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            channel=st.sampled_from(["telegram", "sms"]),
            depth=st.integers(min_value=0, max_value=7),
            inputs=st.lists(inbound_fields, min_size=1, max_size=3),
        )
        def scenario(channel: str, depth: int, inputs: list[dict[str, Any]]) -> None:
            n = next(users)
            key = f"2547{n:08d}" if channel == "sms" else str(500000 + n)

            async def run() -> None:
                chat = Chat(world.engine, channel, key)
                await chat.send("/book")
                for _ in range(depth):  # walk into the flow: booking steps, summary, back to idle
                    if not any(r.options for r in chat.last):
                        break
                    await chat.press_first()
                for fields in inputs:
                    replies = await world.engine.handle(Inbound(channel=channel, user_key=key, **fields))  # type: ignore[arg-type]
                    _check(replies, channel, error_texts)

            runner.run(run())

        try:
            scenario()
        finally:
            runner.run(runtime.close())


def _check(replies: list[Reply], channel: str, error_texts: set[str]) -> None:
    assert replies, "the engine must always answer"
    for reply in replies:
        assert isinstance(reply, Reply) and reply.text.strip()
        assert reply.text not in error_texts, "an input caused an internal error"
        assert "Traceback" not in reply.text and "Error" not in reply.text
        for option in reply.options:
            assert option.value.startswith("v1:") and len(option.value.encode()) <= OPTION_VALUE_MAX_BYTES
    if channel == "sms":
        assert not contains_forbidden(render_sms(replies))
