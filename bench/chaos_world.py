"""The chaos run's plan and its disturbances: the practice, the clients and their push outcomes
drawn from the seed, the kills and outages, waiting for the end state, collecting the evidence.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from sqlalchemy import func, select

from bench.chaos_check import Evidence
from bench.chaos_clients import ClientPlan
from bench.chaos_stack import AT_API_KEY, PrivateCluster, ServiceProcess, StandIns
from core.config import SANDBOX_PASSKEY, SIMULATOR_CONSUMER_SECRET, load_settings
from core.db.models import Booking, CallbackInbox, Outbox, PaymentAttempt, Therapist
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingStatus
from core.runtime import build_runtime
from core.services.booking.directory import add_therapist, seed_demo_data
from simulators.telegram_api.protocol import SIMULATOR_TOKEN

ALL_WEEK = {day: [["06:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
BOOKINGS_PER_PRACTITIONER = 80
# (label, weight): what a client's push does. Each label becomes a Daraja stand-in script.
OUTCOMES: tuple[tuple[str, int], ...] = (
    ("success", 24),
    ("cancelled_1032", 7),
    ("insufficient_1", 6),
    ("wrong_pin_2001", 5),
    ("unreachable_1037", 5),
    ("no_callback", 6),
    ("duplicate_callback", 6),
    ("late_success", 6),
    ("early_callback", 5),
    ("amount_mismatch", 4),
    ("push_503_burst", 7),
    ("slow_answer", 6),
    ("answer_500", 5),
    ("delayed_callback", 4),
)
_RESULT = {
    "success": "success",
    "cancelled_1032": "cancelled",
    "insufficient_1": "insufficient",
    "wrong_pin_2001": "wrong_pin",
    "unreachable_1037": "unreachable",
}


async def seed_practice(url: str, bookings: int) -> dict[str, int]:
    """Session types and SMS-only practitioners open all week; returns {phone: index}."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url}))
    try:
        await seed_demo_data(runtime.uow())
        for i in range(max(2, bookings // BOOKINGS_PER_PRACTITIONER + 2)):
            await add_therapist(
                runtime.uow(),
                name=f"Practitioner {i + 1}",
                email=f"p{i + 1}@chaos.example",
                phone=f"07110{i + 1:05d}",
                weekly_hours=ALL_WEEK,
            )
        async with runtime.uow() as uow:
            phones = (await uow.session.scalars(select(Therapist.phone).order_by(Therapist.id))).all()
    finally:
        await runtime.close()
    return {phone: i for i, phone in enumerate(phones)}


def draw_clients(rng: random.Random, count: int, taken: set[str]) -> list[ClientPlan]:
    """``count`` clients with distinct numbers, half with an e-mail, each with an outcome."""
    labels = [label for label, _w in OUTCOMES]
    weights = [w for _l, w in OUTCOMES]
    numbers: set[str] = set()
    plans = []
    while len(plans) < count:
        phone = f"2547{rng.randrange(10**8):08d}"
        if phone in numbers or phone in taken:
            continue
        numbers.add(phone)
        i = len(plans)
        email = f"client{i}@chaos.example" if rng.random() < 0.5 else None
        plans.append(
            ClientPlan(i, phone, email, rng.choices(labels, weights)[0], random.Random(rng.random()))
        )
    return plans


def script_for(plan: ClientPlan) -> Any:
    """The Daraja stand-in script of this client's push (see simulators/daraja_plan.py)."""
    from simulators.daraja import OUTCOMES as SIM_OUTCOMES
    from simulators.daraja_plan import parse_script

    rng, label = plan.rng, plan.outcome
    item: dict[str, Any] = {"outcome": _RESULT.get(label, label), "delay": round(rng.uniform(0.2, 2.5), 2)}
    if label == "push_503_burst":
        item |= {"outcome": "success", "push_503": rng.randint(1, 2)}
    elif label == "slow_answer":  # answered after the service's 2.5 s push time-out: outcome unknown
        item |= {"outcome": rng.choice(["success", "cancelled"]), "answer": "slow", "slow_s": 4.0}
    elif label == "answer_500":  # processed, answered 500: outcome unknown
        item |= {"outcome": rng.choice(["success", "insufficient"]), "answer": "500"}
    script = parse_script(item, SIM_OUTCOMES)
    assert not isinstance(script, str), script
    return script


class Chaos:
    """Kills (one during a callback burst), an OAuth outage and optionally a PostgreSQL outage."""

    def __init__(
        self,
        rng: random.Random,
        processes: list[ServiceProcess],
        stand_ins: StandIns,
        cluster: PrivateCluster | None,
        bookings: int,
        kills: int,
    ) -> None:
        self.rng, self.processes, self.stand_ins, self.cluster = rng, processes, stand_ins, cluster
        self.bookings = bookings
        self.kill_at = sorted(rng.uniform(0.1, 0.9) for _ in range(max(0, kills - 1)))
        self.burst_kill = kills > 0
        self.oauth_at = rng.uniform(0.2, 0.5)
        self.pg_at = rng.uniform(0.4, 0.7) if cluster else None
        self.kills: list[str] = []
        self.burst_in_flight: int | None = None
        self.oauth_outages = 0
        self.pg_window: tuple[str, str] | None = None
        self.pg_outage_s = 0.0
        self.tokens_seen: set[str] = set()
        self._starts: list[tuple[float, int]] = []
        self.burst_size = 3 if bookings >= 100 else 2

    def _burst(self) -> int:
        """Callbacks begun in the last second (sampled every 50 ms)."""
        now = time.monotonic()
        self._starts.append((now, self.stand_ins.daraja.callbacks_started))
        while self._starts and self._starts[0][0] < now - 1.0:
            self._starts.pop(0)
        return self._starts[-1][1] - self._starts[0][1]

    def progress(self) -> float:
        return len(self.stand_ins.daraja.transactions) / max(1, self.bookings)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.tokens_seen |= set(self.stand_ins.daraja.tokens)
            done = self.progress()
            if self.kill_at and done >= self.kill_at[0]:
                self.kill_at.pop(0)
                await self.kill("at a random moment")
            elif self.burst_kill and done >= 0.3 and self._burst() >= self.burst_size:
                self.burst_kill = False
                self.burst_in_flight = self._burst()
                await self.kill("during a callback burst", web_only=True)
            elif self.oauth_at is not None and done >= self.oauth_at:
                self.oauth_at = None
                await self.oauth_outage()
            elif self.pg_at is not None and done >= self.pg_at:
                self.pg_at = None
                await self.pg_outage()
            await asyncio.sleep(0.05)

    async def finish(self) -> None:
        """Whatever did not happen during the clients' run happens now (the minimum is kept)."""
        if self.burst_kill:
            self.burst_kill = False
            self.burst_in_flight = self._burst()
            await self.kill("after the clients (no burst seen)", web_only=True)
        while self.kill_at:
            self.kill_at.pop(0)
            await self.kill("after the clients")
        if self.pg_at is not None:
            self.pg_at = None
            await self.pg_outage()

    async def kill(self, why: str, *, web_only: bool = False) -> None:
        choices = [p for p in self.processes if p.alive() and (p.serves_http_hooks or not web_only)]
        victim = self.rng.choice(choices or self.processes)
        victim.kill()
        self.kills.append(f"{victim.name} {why} at {self.progress():.0%} of pushes")
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        victim.start()
        await victim.wait_healthy()

    async def oauth_outage(self) -> None:
        daraja = self.stand_ins.daraja
        self.tokens_seen |= set(daraja.tokens)
        daraja.faults["oauth_down"] = True
        daraja.tokens.clear()  # every cached token is refused: the service must fetch a new one
        await asyncio.sleep(self.rng.uniform(2.0, 4.0))
        daraja.faults["oauth_down"] = False
        self.oauth_outages += 1

    async def pg_outage(self) -> None:
        assert self.cluster is not None
        for _ in range(200):  # up to 10 s for callbacks to be flowing: they must meet the outage
            if self._burst() >= 1:
                break
            await asyncio.sleep(0.05)
        started_at, t0 = _stamp(), time.monotonic()
        await asyncio.to_thread(self.cluster.stop, "immediate")
        await asyncio.sleep(self.rng.uniform(3.0, 5.0))
        await asyncio.to_thread(self.cluster.start)
        self.pg_outage_s = round(time.monotonic() - t0, 1)
        self.pg_window = (started_at, _stamp())

    def summary(self, evidence: Evidence) -> dict[str, Any]:
        refused = {e["checkout_request_id"] for e in evidence.callbacks if e.get("status") == 503}
        accepted = {e["checkout_request_id"] for e in evidence.callbacks if e.get("status") == 200}
        return {
            "kills": len(self.kills),
            "kill_list": self.kills,
            "burst_kill_callbacks_last_s": self.burst_in_flight,
            "oauth_outages": self.oauth_outages,
            "pg_outage_s": self.pg_outage_s,
            "callbacks_503_then_accepted": len(refused & accepted),
            "callback_retries": sum(1 for e in evidence.callbacks if e.get("retry")),
        }


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


async def wait_until_settled(url: str, stand_ins: StandIns, timeout: float) -> float | None:  # noqa: ASYNC109
    """Seconds until nothing is live (attempts, inbox, outbox, callbacks); None on time-out."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url}))
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if stand_ins.daraja.callbacks_in_flight == 0 and not stand_ins.daraja._tasks:
                try:
                    if await _nothing_live(runtime):
                        return round(time.monotonic() - t0, 1)
                except Exception:  # noqa: BLE001 - the database may be restarting
                    pass
            await asyncio.sleep(1.0)
    finally:
        await runtime.close()
    return None


async def _nothing_live(runtime: Any) -> bool:
    async with runtime.uow() as uow:
        s = uow.session
        live = await s.scalar(
            select(func.count()).where(PaymentAttempt.status.in_(list(LIVE_PAYMENT_STATUSES)))
        )
        inbox = await s.scalar(select(func.count()).where(CallbackInbox.processed_at.is_(None)))
        outbox = await s.scalar(select(func.count()).where(Outbox.status == "PENDING"))
        pending = await s.scalar(select(func.count()).where(Booking.status == BookingStatus.PENDING_APPROVAL))
    return not (live or inbox or outbox or pending)


def evidence(stand_ins: StandIns, secret_key: str) -> Evidence:
    daraja = stand_ins.daraja
    found = Evidence(secret_key=secret_key)
    found.callbacks = [e for e in daraja.log if e["kind"] == "callback"]
    found.push_urls = [t.callback_url for t in daraja.transactions.values()]
    for sms in stand_ins.at.messages:
        if sms.status_code in (100, 101, 102):
            found.sms_to[sms.to.lstrip("+")] += 1
            found.sms_ids.add(sms.message_id)
    for mail in stand_ins.mailbox.messages:
        for rcpt in mail.rcpt_tos:
            found.mail_to[rcpt.lower()] += 1
    return found


def secrets_to_hide(keys: dict[str, str], stand_ins: StandIns, found: Evidence, chaos: Chaos) -> list[str]:
    """Everything no log line may contain: keys, the passkey, API secrets, tokens, callback secrets."""
    callback_secrets = [url.rsplit("/", 1)[-1] for url in found.push_urls]
    tokens = chaos.tokens_seen | set(stand_ins.daraja.tokens)
    return [
        *keys.values(),
        SANDBOX_PASSKEY,
        SIMULATOR_CONSUMER_SECRET,
        AT_API_KEY,
        SIMULATOR_TOKEN,
        *callback_secrets,
        *tokens,
    ]


async def final_status_by_reference(url: str) -> dict[str, str]:
    runtime = build_runtime(load_settings({"DATABASE_URL": url}))
    try:
        async with runtime.uow() as uow:
            rows = (await uow.session.execute(select(Booking.reference, Booking.status))).all()
    finally:
        await runtime.close()
    return {reference: status for reference, status in rows}
