"""Hypothesis strategies and a live application for fuzzing the public routes (issue 14).

Shared by tests/integration/test_fuzz_*.py (a few hundred cases per endpoint) and bench/fuzz.py
(10 000 per endpoint). The strategies are structure-aware: they start from the real bodies in
/work/shared/samples/real-world-callbacks/ (copied shapes below when that folder is absent) and
mutate types, values and nesting; they also send raw bytes, wrong content types, oversized and
deeply nested bodies.

``LiveApp`` runs the whole application (local mode, webhooks, admin site, bot, stand-ins) on a
real 127.0.0.1 port in a thread with its own event loop, so synchronous Hypothesis tests can
share ONE app instance per test module and still reach the database for snapshots.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from hypothesis import strategies as st
from sqlalchemy import text

from core.db.models import Base
from core.runtime import Runtime, build_runtime

T = TypeVar("T")
SAMPLES = Path("/work/shared/samples/real-world-callbacks")
SECRET_KEY = "fuzz-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
TELEGRAM_SECRET = "fuzz-telegram-secret-0123456789"
AT_SECRET = "fuzz-at-secret-0123456789abc"
LNM_SECRET = "fuzz-lnm-secret-0123456789abcdef"
LIVE_CHECKOUT_ID = "ws_CO_FUZZ000000000000001"  # the live attempt the fuzzed callbacks aim at
ADMIN_USER, ADMIN_PASSWORD = "fuzzadmin", "fuzz correct horse battery staple"
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')

# Columns the background workers change after an ACCEPTED request (settlement, outbox sending):
# they are left out of snapshots so that a later rejected request is judged on its own rows.
VOLATILE = {
    # settlement marks rows and holds its lease on them (payments/inbox.py, core/db/claims.py)
    "callback_inbox": {"processed_at", "attempts", "last_error", "claimed_until", "claimed_by"},
    "outbox": {"status", "attempts", "claimed_until", "claimed_by", "last_error", "provider_message_id",
               "sent_at", "due_at"},
    "payment_attempts": {"claimed_until", "claimed_by"},  # a watchdog tick's lease (core/db/claims.py)
}
# Records that a refused request writes on purpose, not a change of anything: the audited read of
# the page shown again with the reason (Property 69 audits every view of payment data) and the
# security record of a settings change refused for a wrong password (it counts towards lock-out).
EXPECTED_ROWS = {"audit_entries": "action NOT IN ('admin.accessed', 'settings.mpesa_refused')"}

_FALLBACK_STK = {"Body": {"stkCallback": {
    "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": "ws_CO_191220191020363925",
    "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
    "CallbackMetadata": {"Item": [
        {"Name": "Amount", "Value": 1.00}, {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
        {"Name": "TransactionDate", "Value": 20191219102115}, {"Name": "PhoneNumber", "Value": 254708374149},
    ]},
}}}
_FALLBACK_INBOUND = {"date": "2024-03-12 10:15:42", "from": "+254711082300", "id": "a3c0f4a6",
                     "linkId": "", "text": "BOOK", "to": "22384", "networkCode": "63902"}
_FALLBACK_DELIVERY = {"id": "ATXid_3f1c2e0a", "status": "Success", "phoneNumber": "+254711082300",
                      "networkCode": "63902", "retryCount": "0"}


def samples(folder: str, fallback: dict[str, Any]) -> list[Any]:
    """The real bodies of one kind (JSON files), or the fallback shape."""
    paths = sorted((SAMPLES / folder).glob("*.json")) if SAMPLES.is_dir() else []
    return [json.loads(p.read_text()) for p in paths] or [fallback]


STK_SAMPLES = samples("stk_callbacks", _FALLBACK_STK)
INBOUND_SAMPLES = samples("at_inbound_sms", _FALLBACK_INBOUND)
DELIVERY_SAMPLES = samples("at_delivery_reports", _FALLBACK_DELIVERY)
TELEGRAM_SAMPLES: list[Any] = [
    {"update_id": 1, "message": {"message_id": 1, "date": 1733300000, "text": "/start",
                                 "chat": {"id": 424242, "type": "private", "first_name": "Wanjiru"},
                                 "from": {"id": 424242, "is_bot": False, "first_name": "Wanjiru"}}},
    {"update_id": 2, "callback_query": {"id": "77", "data": "pay:1", "chat_instance": "1",
                                        "from": {"id": 424242, "is_bot": False, "first_name": "W"}}},
]

# -- strategies -----------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from([
        "<script>alert(1)</script>", "<b>bold</b>&amp;", "'; DROP TABLE clients; --", "\" OR 1=1 --",
        "\u202egnp.exe", "a\u200bb\u200d\ufeff", "😀" * 50, "x" * 4096, "%s%n%x", "\x00\x01\x7f", "\ud800",
        "NaN", "-1", "1e309", "0x10", "   ", "",
    ]),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


def _replace(value: Any, path: tuple[Any, ...], new: Callable[[Any], Any]) -> Any:
    if not path:
        return new(value)
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


_DELETE = object()


def _drop_deleted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_deleted(v) for k, v in value.items() if v is not _DELETE}
    if isinstance(value, list):
        return [_drop_deleted(v) for v in value if v is not _DELETE]
    return value


@st.composite
def mutated(draw: st.DrawFn, shapes: list[Any], *, keep: Callable[[Any], Any] | None = None) -> Any:
    """A real body with 0-3 mutations: a value replaced (any type), removed, wrapped or nested deeper."""
    body = draw(st.sampled_from(shapes))
    if keep is not None:
        body = keep(body)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        how = draw(st.sampled_from(["value", "delete", "wrap", "nest", "stringify", "number"]))
        if how == "value":
            replacement = draw(json_values)
            body = _replace(body, path, lambda _old, r=replacement: r)
        elif how == "delete" and path:
            body = _drop_deleted(_replace(body, path, lambda _old: _DELETE))
        elif how == "wrap":
            body = _replace(body, path, lambda old: [old])
        elif how == "nest":
            depth = draw(st.integers(1, 60))
            body = _replace(body, path, lambda old, d=depth: _nest(old, d))
        elif how == "stringify":
            body = _replace(body, path, lambda old: json.dumps(old) if not isinstance(old, str) else old)
        elif how == "number":
            number = draw(st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=False)))
            body = _replace(body, path, lambda _old, n=number: n)
    return body


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Body:
    """What is sent: raw bytes and a Content-Type (None: no header)."""

    data: bytes
    content_type: str | None
    kind: str

    def __repr__(self) -> str:  # Hypothesis prints the falsifying example: keep it readable
        more = "…" if len(self.data) > 300 else ""
        return f"Body({self.kind}, {self.content_type!r}, {self.data[:300]!r}{more})"


CONTENT_TYPES = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8", "application/json; charset=bogus",
    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x",
    "text/plain", "text/html", "application/xml", "application/octet-stream", "\u00ff/\u00fe", "",
])


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _form_bytes(value: Any) -> bytes:
    if not isinstance(value, dict):
        return urlencode({"v": json.dumps(value)}).encode()
    pairs = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()]
    return urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                      for k, v in pairs]).encode()


def deep_body(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


def hostile_bodies(structured: st.SearchStrategy[Any], *, form: bool) -> st.SearchStrategy[Body]:
    """Mostly structure-aware bodies in the endpoint's own encoding, plus the hostile rest."""
    encode = _form_bytes if form else _json_bytes
    own_type = "application/x-www-form-urlencoded" if form else "application/json"
    return st.one_of(
        structured.map(lambda v: Body(encode(v), own_type, "structured")),
        structured.map(lambda v: Body(encode(v), own_type, "structured")),
        st.tuples(structured, CONTENT_TYPES).map(lambda t: Body(_json_bytes(t[0]), t[1], "json, any type")),
        st.tuples(structured, CONTENT_TYPES).map(lambda t: Body(_form_bytes(t[0]), t[1], "form, any type")),
        st.tuples(st.binary(max_size=2000), CONTENT_TYPES).map(lambda t: Body(t[0], t[1], "raw bytes")),
        st.tuples(st.integers(50, 20_000), st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")])).map(
            lambda t: Body(deep_body(t[0], *t[1]) if t[1][0] == b"[" else
                           t[1][0] * t[0] + b"1" + t[1][1] * t[0], "application/json", "deep nesting")),
        st.sampled_from([70_000, 300_000, 1_200_000]).map(
            lambda n: Body(b'{"x":"' + b"A" * n + b'"}', own_type, f"oversized {n}")),
    )


def stk_bodies() -> st.SearchStrategy[Body]:
    return hostile_bodies(mutated(STK_SAMPLES), form=False)


def stk_bodies_for(checkout_request_id: str) -> st.SearchStrategy[Body]:
    """STK callbacks aimed at a live attempt (its CheckoutRequestID), then mutated."""
    def aim(body: Any) -> Any:
        try:
            where = ("Body", "stkCallback", "CheckoutRequestID")
            return _replace(body, where, lambda _o: checkout_request_id)
        except (KeyError, TypeError, IndexError):
            return body
    return hostile_bodies(mutated(STK_SAMPLES, keep=aim), form=False)


def sms_inbound_bodies() -> st.SearchStrategy[Body]:
    return hostile_bodies(mutated(INBOUND_SAMPLES), form=True)


def sms_delivery_bodies() -> st.SearchStrategy[Body]:
    return hostile_bodies(mutated(DELIVERY_SAMPLES), form=True)


def telegram_bodies() -> st.SearchStrategy[Body]:
    return hostile_bodies(mutated(TELEGRAM_SAMPLES), form=False)


def admin_forms(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """A form with the page's fields (each maybe missing or hostile) and a few unknown ones."""
    present = {name: st.one_of(strategy, hostile_text) for name, strategy in fields.items()}
    return st.fixed_dictionaries({}, optional=present).flatmap(
        lambda form: st.dictionaries(st.text(min_size=1, max_size=10), hostile_text, max_size=2).map(
            lambda extra: {**extra, **form}))


def webhooks() -> dict[str, tuple[str, dict[str, str], st.SearchStrategy[Body]]]:
    """Every public webhook to fuzz: label -> (path, headers, bodies)."""
    telegram = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    return {
        "lnm valid secret": (f"/hooks/lnm/{LNM_SECRET}", {}, stk_bodies_for(LIVE_CHECKOUT_ID)),
        "lnm unknown secret": ("/hooks/lnm/not-a-secret-of-ours", {}, stk_bodies()),
        "sms inbound": (f"/hooks/sms/{AT_SECRET}/inbound", {}, sms_inbound_bodies()),
        "sms delivery": (f"/hooks/sms/{AT_SECRET}/delivery", {}, sms_delivery_bodies()),
        "sms wrong secret": ("/hooks/sms/wrong-secret/inbound", {}, sms_inbound_bodies()),
        "telegram": ("/hooks/telegram", telegram, telegram_bodies()),
        "telegram wrong secret": ("/hooks/telegram", {"X-Telegram-Bot-Api-Secret-Token": "nope"},
                                  telegram_bodies()),
    }


# -- the live application -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    text: str


@dataclass
class LiveApp:
    """The whole application on 127.0.0.1 in a background thread (see the module docstring)."""

    database_url: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    base_url: str = ""
    runtime: Runtime | None = None
    lnm_checkout_id: str = ""
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    _admin: aiohttp.ClientSession | None = None
    csrf: str = ""

    def __repr__(self) -> str:
        return f"LiveApp({self.base_url})"

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    async def _start(self) -> None:
        from smiling_steps.app import create_app
        from tests.conftest import make_settings

        port = _free_port()  # the stand-ins in local mode call the app back on PORT
        self.runtime = build_runtime(make_settings(
            self.database_url, PORT=str(port), SECRET_KEY=SECRET_KEY, TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET,
            AT_WEBHOOK_SECRET=AT_SECRET,
        ))
        self._runner = web.AppRunner(create_app(self.runtime.settings, self.runtime))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            if self.runtime.components.get("bot") == "ok":
                break
            await asyncio.sleep(0.05)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self._live_attempt()
        await self._sign_in()

    async def _live_attempt(self) -> None:
        """A booking with an attempt awaiting its callback, reachable at /hooks/lnm/LNM_SECRET."""
        from core.services.payments.initiate import callback_secret_hash
        from tests.factories import make_attempt, make_booking

        assert self.runtime is not None
        far = self.runtime.clock() + timedelta(days=30)
        async with self.runtime.sessions() as session:
            booking = await make_booking(session)
            attempt = await make_attempt(
                session, booking, deadline_at=far, next_check_at=far, checkout_request_id=LIVE_CHECKOUT_ID,
                callback_secret_hash=callback_secret_hash(SECRET_KEY, LNM_SECRET),
            )
            self.lnm_checkout_id = str(attempt.checkout_request_id)
            await session.commit()

    async def _sign_in(self) -> None:
        from core.services.ops.admins import create_admin

        assert self.runtime is not None
        await create_admin(self.runtime.uow(), username=ADMIN_USER, password=ADMIN_PASSWORD)
        self._admin = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await (await self._admin.get(f"{self.base_url}/admin/login")).text()
        token = _CSRF_INPUT.search(page)
        assert token, "no csrf_token on the login page"
        async with self._admin.post(f"{self.base_url}/admin/login", allow_redirects=False, data={
            "username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf_token": token.group(1)}) as answer:
            assert answer.status == 303, await answer.text()
        await self.refresh_csrf()

    async def refresh_csrf(self) -> str:
        assert self._admin is not None
        page = await (await self._admin.get(f"{self.base_url}/admin/settings")).text()
        token = _CSRF_INPUT.search(page)
        assert token, "no csrf_token on the settings page"
        self.csrf = token.group(1)
        return self.csrf

    async def _stop(self) -> None:
        for session in (self._http, self._admin):
            if session is not None:
                await session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.runtime is not None:
            await self.runtime.close()

    # -- requests (synchronous, for Hypothesis) --

    def post(self, path: str, body: Body, *, headers: dict[str, str] | None = None,
             admin: bool = False) -> Answer:
        async def go() -> Answer:
            session = self._admin if admin else self._http
            assert session is not None
            sent = dict(headers or {})
            if body.content_type is not None:
                sent["Content-Type"] = body.content_type
            skip = () if body.content_type is not None else ("Content-Type",)
            async with session.post(f"{self.base_url}{path}", data=body.data, headers=sent,
                                    skip_auto_headers=skip, allow_redirects=False) as answer:
                return Answer(answer.status, await answer.text(errors="replace"))
        return self.run(go())

    def post_form(self, path: str, form: dict[str, str] | aiohttp.FormData) -> Answer:
        async def go() -> Answer:
            assert self._admin is not None
            data, headers = _encoded(form)
            async with self._admin.post(f"{self.base_url}{path}", data=data, headers=headers,
                                        allow_redirects=False) as answer:
                return Answer(answer.status, await answer.text(errors="replace"))
        return self.run(go())

    def login_attempt(self, form: dict[str, str]) -> Answer:
        """POST the login form from a fresh browser (its own cookie and the login page's token)."""
        async def go() -> Answer:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                page = await (await browser.get(f"{self.base_url}/admin/login")).text()
                token = _CSRF_INPUT.search(page)
                data, headers = _encoded({"csrf_token": token.group(1) if token else "", **form})
                async with browser.post(f"{self.base_url}/admin/login", data=data, headers=headers,
                                        allow_redirects=False) as answer:
                    return Answer(answer.status, await answer.text(errors="replace"))
        return self.run(go())

    def get(self, path: str, *, admin: bool = False) -> Answer:
        async def go() -> Answer:
            session = self._admin if admin else self._http
            assert session is not None
            async with session.get(f"{self.base_url}{path}", allow_redirects=False) as answer:
                return Answer(answer.status, await answer.text(errors="replace"))
        return self.run(go())

    def healthy(self) -> bool:
        return self.get("/healthz").status == 200

    # -- database snapshots --

    def snapshot(self, skip: frozenset[str] = frozenset()) -> dict[str, str]:
        """A digest of every row of every table (volatile worker columns left out)."""
        async def go() -> dict[str, str]:
            assert self.runtime is not None
            digests = {}
            async with self.runtime.engine.connect() as conn:
                for table in Base.metadata.sorted_tables:
                    if table.name in skip:
                        continue
                    columns = [c.name for c in table.columns if c.name not in VOLATILE.get(table.name, set())]
                    listed = ", ".join(f'"{c}"' for c in columns)
                    where = f"WHERE {EXPECTED_ROWS[table.name]}" if table.name in EXPECTED_ROWS else ""
                    query = f'SELECT {listed} FROM "{table.name}" {where} ORDER BY 1'
                    rows = (await conn.execute(text(query))).all()
                    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
                    digests[table.name] = f"{len(rows)}:{digest}"
            return digests
        return self.run(go())

    def settle(self, skip: frozenset[str] = frozenset(), *, within_s: float = 3.0) -> dict[str, str]:
        """Wait until two snapshots 50 ms apart agree (the workers finished an accepted request)."""
        before = self.snapshot(skip)
        waited = 0.0
        while waited < within_s:
            self.run(asyncio.sleep(0.05))
            waited += 0.05
            now = self.snapshot(skip)
            if now == before:
                return now
            before = now
        return before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _encoded(form: dict[str, str] | aiohttp.FormData) -> tuple[Any, dict[str, str]]:
    """A dict as a urlencoded body (as a browser sends it, any key); FormData as it is."""
    if isinstance(form, aiohttp.FormData):
        return form, {}
    return _form_bytes(form), {"Content-Type": "application/x-www-form-urlencoded"}


@contextmanager
def live_app(database_url: str) -> Iterator[LiveApp]:
    """Start the app in a background thread; stop it and the loop at the end."""
    app = LiveApp(database_url)
    thread = threading.Thread(target=app.loop.run_forever, name="fuzz-app", daemon=True)
    thread.start()
    try:
        app.run(app._start(), timeout=120)
        yield app
    finally:
        try:
            app.run(app._stop(), timeout=60)
        finally:
            app.loop.call_soon_threadsafe(app.loop.stop)
            thread.join(10)
            app.loop.close()


def serve_for_module(request: Any, tmp_path_factory: Any) -> Iterator[LiveApp]:
    """Body of a module-scoped ``app`` fixture (params=BACKENDS): one live app on a fresh database."""
    if request.param == "sqlite":
        target = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        url = f"sqlite+aiosqlite:///{target}"
    else:
        from tests.conftest import _truncate_all

        url = request.getfixturevalue("pg_database")
        asyncio.run(_truncate_all(url))
    with live_app(url) as running:
        yield running


@dataclass
class Tally:
    """Counts of one fuzz run: what was sent, answers by status class, invariant violations."""

    sent: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def count(self, status: int) -> None:
        self.sent += 1
        key = f"{status // 100}xx"
        self.by_class[key] = self.by_class.get(key, 0) + 1


def check_case(app: LiveApp, send: Callable[[], Answer], tally: Tally, label: str,
               skip: frozenset[str] = frozenset()) -> Answer:
    """Send one case and check the invariants; violations are recorded in ``tally``.

    A 5xx is a violation; a rejected request (4xx) must leave every row as it was.
    """
    before = app.snapshot(skip)
    answer = send()
    tally.count(answer.status)
    if answer.status >= 500:
        tally.violations.append(f"{label}: {answer.status} {answer.text[:200]!r}")
    elif answer.status >= 400:
        after = app.snapshot(skip)
        changed = sorted(t for t in after if after[t] != before.get(t))
        if changed:
            tally.violations.append(f"{label}: {answer.status} but rows changed in {changed}")
    else:
        app.settle(skip)
    return answer
