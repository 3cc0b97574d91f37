"""Reading a caller's request body whole — under a byte cap and a time limit — and decoding JSON safely.

``request.content.read(n)`` answers with whatever bytes have arrived so far, so a body that
comes in two TCP segments (or in chunked transfer-encoding) would be cut. Every route that reads
a body uses :func:`read_body`, which reads until the end of the body and refuses:

- a body over the route's cap: 400 (``Content-Length`` is checked before anything is read);
- a body that does not arrive whole within :attr:`BodyLimits.timeout_s`: 408;
- a broken body (bad chunk framing, bad compression, connection gone): 400;
- when :attr:`BodyLimits.max_concurrent` bodies are already being read and no slot frees up
  in time: 503 (the providers retry), so slow senders cannot make the process hold an
  unbounded number of half-read bodies.

:func:`load_json` refuses JSON nested deeper than a limit before parsing it (and never lets a
``RecursionError`` out). Each route turns :class:`BodyRejected` into its own answer format.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class BodyLimits:
    """How long a body may take to arrive, and how many may be read at once (per event loop)."""

    timeout_s: float = 10.0
    max_concurrent: int = 128


BODY_LIMITS = web.AppKey("body_limits", BodyLimits)
DEFAULT_LIMITS = BodyLimits()


class BodyRejected(Exception):
    """The body cannot be used; ``status`` and ``reason`` say why (a 4xx, or 503 when busy)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def limits_of(request: web.Request) -> BodyLimits:
    """The limits set on the application (or a parent application), else the defaults."""
    return request.config_dict.get(BODY_LIMITS, DEFAULT_LIMITS)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, at most ``max_bytes`` long (after any Content-Encoding is undone)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyRejected(400, f"body too large (at most {max_bytes} bytes)")
    chunks: list[bytes] = []
    size = 0
    async with reading_slot(request):
        try:
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyRejected(400, f"body too large (at most {max_bytes} bytes)")
                chunks.append(chunk)
        except (RequestPayloadError, HttpProcessingError, OSError) as exc:
            raise BodyRejected(400, f"body could not be read ({type(exc).__name__})") from None
    return b"".join(chunks)


# One gate per event loop and set of limits (a Semaphore belongs to the loop it is used on).
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[BodyLimits, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def reading_slot(request: web.Request) -> AsyncIterator[None]:
    """Hold one of the loop's body-reading slots while the body arrives, within the time limit.

    For routes that let aiohttp parse the body (``await request.post()``): wrap that call.
    """
    limits = limits_of(request)
    loop = asyncio.get_running_loop()
    gates = _GATES.setdefault(loop, {})
    gate = gates.get(limits)
    if gate is None:
        gate = gates[limits] = asyncio.Semaphore(limits.max_concurrent)
    deadline = loop.time() + limits.timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            await gate.acquire()
    except TimeoutError:
        raise BodyRejected(503, "busy: too many requests being received, retry later") from None
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise BodyRejected(408, f"body not received within {limits.timeout_s:g} s") from None
    finally:
        gate.release()


# A JSON string (escapes included), or a bracket. A quote that starts no complete string
# stops the scan: the text is not valid JSON and the parser will say so.
_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.DOTALL)


def nesting_depth(raw: bytes) -> int:
    """How deeply ``[``/``{`` nest in JSON text, in one linear scan (strings skipped)."""
    depth = deepest = 0
    for token in _TOKENS.finditer(raw):
        kind = token.group()[:1]
        if kind in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif kind in (b"]", b"}"):
            depth -= 1
        elif len(token.group()) == 1:  # an unterminated string
            break
    return deepest


def load_json(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON text; ValueError (with a short reason) for anything that is not usable JSON."""
    if nesting_depth(raw) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except RecursionError:  # cannot happen after the depth check; kept as the last line of defence
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise ValueError(f"not valid JSON ({type(exc).__name__})") from None
