"""Scripted pushes per phone number for the Daraja simulator (chaos runs, fault drills).

A plan is a queue of :class:`PushScript` per phone: each push to that phone takes the head of
its queue, so a run with thousands of concurrent pushes stays deterministic (the global
``/control/next-outcome`` queue would hand outcomes out in arrival order, which concurrency
shuffles). A script says what the push ends with and how Daraja answers the push itself:

* ``outcome``: any outcome of ``simulators.daraja.OUTCOMES`` (success, cancelled, …,
  ``late_success``, ``early_callback``, ``amount_mismatch``);
* ``push_503``: answer this many pushes with HTTP 503 first (nothing is processed; the
  service may push again, and the next push takes the same script);
* ``answer``: ``ok`` (the usual 200), ``500`` (the push IS processed — prompt and callback
  happen — but the answer is a 500: the outcome is unknown to the caller) or ``slow`` (the push
  is processed at once and answered after ``slow_s`` seconds: beyond the caller's time-out the
  outcome is unknown too);
* ``delay``: seconds from acceptance to the result (default: the simulator's callback delay).

Imports nothing from the product: the simulator is an outside system.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

ANSWERS = ("ok", "500", "slow")
MAX_SCRIPTS_PER_PHONE = 100


@dataclass
class PushScript:
    """What one push to a phone does (see the module docstring)."""

    outcome: str
    delay: float | None = None
    push_503: int = 0
    answer: str = "ok"
    slow_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_script(item: object, outcomes: tuple[str, ...]) -> PushScript | str:
    """A script from its JSON form, or the reason it is refused (one line)."""
    if not isinstance(item, dict):
        return "each push must be a JSON object"
    unknown = set(item) - {"outcome", "delay", "push_503", "answer", "slow_s"}
    if unknown:
        return f"unknown key(s): {', '.join(sorted(unknown))}"
    outcome = item.get("outcome")
    if outcome not in outcomes or outcome == "hold":
        return f"outcome must be one of: {', '.join(o for o in outcomes if o != 'hold')}"
    answer = item.get("answer", "ok")
    if answer not in ANSWERS:
        return f"answer must be one of: {', '.join(ANSWERS)}"
    numbers: dict[str, float] = {}
    for key, top in (("delay", 86_400.0), ("push_503", 100.0), ("slow_s", 600.0)):
        value = item.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
            return f"{key} must be a number from 0 to {top:g}"
        numbers[key] = float(value)
    return PushScript(
        outcome=outcome,
        delay=numbers.get("delay"),
        push_503=int(numbers.get("push_503", 0)),
        answer=answer,
        slow_s=numbers.get("slow_s", 0.0),
    )


class PushPlans:
    """The scripted pushes of every planned phone (FIFO per phone)."""

    def __init__(self) -> None:
        self._plans: dict[str, deque[PushScript]] = {}

    def add(self, phone: str, scripts: list[PushScript]) -> int:
        """Queue ``scripts`` for ``phone``; returns how many wait for it now."""
        queue = self._plans.setdefault(phone, deque())
        queue.extend(scripts)
        while len(queue) > MAX_SCRIPTS_PER_PHONE:
            queue.popleft()
        return len(queue)

    def head(self, phone: str) -> PushScript | None:
        """The script the next push to ``phone`` follows (not taken yet)."""
        queue = self._plans.get(phone)
        return queue[0] if queue else None

    def take(self, phone: str) -> PushScript | None:
        """Take the head script of ``phone`` (the push it belongs to is being processed)."""
        queue = self._plans.get(phone)
        if not queue:
            return None
        script = queue.popleft()
        if not queue:
            del self._plans[phone]
        return script

    def waiting(self) -> int:
        """Scripts not used yet, all phones together."""
        return sum(len(q) for q in self._plans.values())

    def clear(self) -> None:
        self._plans.clear()
