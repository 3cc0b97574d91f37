"""The chaos run's people: clients booking and paying by SMS, practitioners approving by SMS.

Everything goes through the service's real SMS hook (``POST /hooks/sms/{secret}/inbound``, the
Africa's Talking form) and comes back as the SMS the service sends through the Africa's Talking
stand-in. A post that fails (the process was killed, the database is down) is sent again with
the same message id, as Africa's Talking would; a post answered but never replied to is sent
again too (the service answers a stored-but-unanswered message when it arrives again).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench.chaos_stack import SHORTCODE, StandIns

REPLY_WAIT_S = 20.0
POST_GIVE_UP_S = 120.0
APPROVAL_WAIT_S = 180.0
_OPTION = re.compile(r"^(\d+) (.+)$", re.MULTILINE)
_REFERENCE = re.compile(r"Request (\S+) sent\.")
_APPROVAL = re.compile(r"New booking (\S+):.*Reply A(\w+) to approve", re.DOTALL)


@dataclass
class ClientPlan:
    """One client: their number, e-mail (or None) and the scripted push outcome of their payment."""

    index: int
    phone: str
    email: str | None
    outcome: str
    rng: random.Random
    reference: str | None = None
    paid_step: bool = False
    stalled: str | None = None
    last_reply: str | None = None  # the last SMS read back (for a stalled conversation's report)


@dataclass
class Hook:
    """Posts inbound SMS to whichever service process serves HTTP and is up."""

    targets: Callable[[], list[str]]
    secret: str
    seed: int
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=15))
    posts: int = 0
    reposts: int = 0

    async def post(self, sender: str, text: str, message_id: str, rng: random.Random) -> bool:
        """POST until a service process answers 200 (at most POST_GIVE_UP_S); False if never."""
        form = {
            "from": "+" + sender,
            "to": SHORTCODE,
            "text": text,
            "id": message_id,
            "date": "2026-12-04 10:15:42",
            "linkId": "",
        }
        loop = asyncio.get_running_loop()
        give_up = loop.time() + POST_GIVE_UP_S
        while loop.time() < give_up:
            bases = self.targets()
            base = rng.choice(bases) if bases else None
            self.posts += 1
            if base is not None:
                try:
                    answer = await self.http.post(f"{base}/hooks/sms/{self.secret}/inbound", data=form)
                    if answer.status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
            self.reposts += 1
            await asyncio.sleep(0.3 + rng.random() * 0.7)
        return False


class Conversation:
    """A client's side of the SMS conversation: say something, read the next SMS back."""

    def __init__(self, hook: Hook, stand_ins: StandIns, plan: ClientPlan) -> None:
        self.hook, self.plan = hook, plan
        self.inbox = stand_ins.inboxes[plan.phone]
        self.turn = 0

    async def say(self, text: str, expect: str | None = None) -> str | None:
        """Text the service; the next SMS back (with ``expect``: the next one containing it)."""
        while not self.inbox.empty():  # a repeated SMS (sent twice) must not answer the next turn
            self.inbox.get_nowait()
        self.turn += 1
        message_id = f"chaos-{self.hook.seed}-{self.plan.index}-{self.turn}"
        for _ in range(4):
            if not await self.hook.post(self.plan.phone, text, message_id, self.plan.rng):
                return None
            reply = await self.wait_for(expect or "", REPLY_WAIT_S)
            if reply is not None:
                self.plan.last_reply = reply
                return reply
            # No answer: a client would text again (same id: the service answers a message once)
        return None

    async def wait_for(self, needle: str, within: float) -> str | None:
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            try:
                text = await asyncio.wait_for(self.inbox.get(), max(0.1, end - loop.time()))
            except TimeoutError:
                return None
            if needle in text:
                return text
        return None


def _options(reply: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2).strip()) for m in _OPTION.finditer(reply)]


def next_answer(reply: str, plan: ClientPlan, therapists: int) -> str | None:
    """What the client texts back to one reply of the booking conversation (None: finished)."""
    rng, options = plan.rng, _options(reply)
    numbers = [n for n, _label in options]
    more = [n for n, label in options if label == "More"]
    if _REFERENCE.search(reply):
        return None
    if "Who would you like to see?" in reply and numbers:
        return rng.choice(numbers[:therapists])
    if "Which kind of session?" in reply and numbers:
        return rng.choice(numbers)
    if ("Pick a day" in reply or "Pick a start time" in reply) and numbers:
        if more and rng.random() < 0.5:
            return more[0]
        return rng.choice([n for n in numbers if n not in more] or numbers)
    if "e-mail address" in reply:
        return plan.email or "1"  # 1 = Skip
    if "Confirm?" in reply:
        return "1"
    return "BOOK"  # a menu we do not follow (or "start again"): begin anew


async def book_and_pay(hook: Hook, stand_ins: StandIns, plan: ClientPlan, therapists: int) -> None:
    """Book a session, wait for the approval, then PAY with the client's own number."""
    talk = Conversation(hook, stand_ins, plan)
    reply = await talk.say("BOOK")
    for _ in range(40):
        if reply is None:
            plan.stalled = "no reply while booking"
            return
        answer = next_answer(reply, plan, therapists)
        if answer is None:
            match = _REFERENCE.search(reply)
            plan.reference = match.group(1) if match else None
            break
        reply = await talk.say(answer)
    else:
        plan.stalled = "booking conversation did not finish"
        return
    if await talk.wait_for("PAY", APPROVAL_WAIT_S) is None:
        plan.stalled = "no approval notice"
        return
    reply = await talk.say("PAY", expect="M-Pesa number")  # skips a repeated approval notice
    if reply is None or "M-Pesa number" not in reply:
        plan.stalled = "PAY did not ask for a number"
        return
    plan.paid_step = await hook.post(plan.phone, plan.phone, f"chaos-{hook.seed}-{plan.index}-pay", plan.rng)


async def practitioner(
    hook: Hook,
    stand_ins: StandIns,
    phone: str,
    index: int,
    rng: random.Random,
    stop: asyncio.Event,
    approved: list[str],
) -> None:
    """Approve every booking request texted to this practitioner (A<code>), like a person would:
    texting again when no "Approved <ref>" comes back (an error reply, a message lost in a kill)."""
    inbox = stand_ins.inboxes[phone]
    waiting: dict[str, tuple[str, float]] = {}  # reference -> (code, when last texted)
    n = 0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            text = await asyncio.wait_for(inbox.get(), 0.5)
        except TimeoutError:
            text = ""
        request = _APPROVAL.search(text)
        if request and request.group(1) not in approved and request.group(1) not in waiting:
            waiting[request.group(1)] = (request.group(2), 0.0)
        for reference in [r for r in waiting if r in text and "pprove" in text and "New booking" not in text]:
            del waiting[reference]  # "Approved <ref>." or "<ref> is already approved"
            approved.append(reference)
        for reference, (code, last) in list(waiting.items()):
            if loop.time() - last > REPLY_WAIT_S:
                n += 1
                waiting[reference] = (code, loop.time())
                await hook.post(phone, f"A{code}", f"chaos-{hook.seed}-p{index}-{n}", rng)
