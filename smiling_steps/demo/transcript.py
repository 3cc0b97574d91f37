"""The demo's output: one line per thing that happens, steps with their outcome, a summary table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO


class StepFailed(Exception):
    """A scenario step did not see what it waited for; the message says what was missing."""


@dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


class Transcript:
    """Prints as it happens (flushed line by line) and keeps the step results for the summary."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._start = time.monotonic()
        self.steps: list[StepResult] = []

    def line(self, who: str, text: str) -> None:
        """``[  1.2s] who  text`` with continuation lines indented under the text."""
        elapsed = time.monotonic() - self._start
        lines = (text.strip() or "(empty)").splitlines()
        pad = " " * 27
        body = ("\n" + pad).join(lines)
        print(f"[{elapsed:6.1f}s] {who:<17} {body}", file=self._out, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step: recorded as passed, or as failed (then StepFailed carries its name on)."""
        print(f"\n== {name}", file=self._out, flush=True)
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            self.steps.append(StepResult(name, False, time.monotonic() - started, detail))
            raise StepFailed(f"step '{name}' failed: {detail}") from exc
        self.steps.append(StepResult(name, True, time.monotonic() - started))

    def summary(self, scenario: str) -> str:
        """The table printed at the end: every step, its outcome and time."""
        width = max([len(s.name) for s in self.steps] + [4])
        rows = [f"Scenario '{scenario}'", f"  {'step':<{width}}  result  seconds"]
        for s in self.steps:
            mark = "ok" if s.ok else "FAILED"
            rows.append(f"  {s.name:<{width}}  {mark:<6}  {s.seconds:7.1f}")
            if s.detail:
                rows.append(f"  {'':<{width}}    {s.detail}")
        passed = sum(s.ok for s in self.steps)
        rows.append(f"  {passed}/{len(self.steps)} steps passed")
        return "\n".join(rows)
