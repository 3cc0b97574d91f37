"""Local mode's first start: demo data for an empty database and the banner that says what to open.

Only ever used when MPESA_ENVIRONMENT is unset/``simulator`` (never sandbox or production).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings
from core.runtime import Runtime
from core.services.booking.directory import demo_therapist_names, seed_demo_data, seed_demo_data_if_empty

# The practitioner personas of the simulated Telegram chat (simulators/telegram_chat.PRESETS), in the
# order the chat page offers them; the demo practitioners are linked to them in booking-list order.
DEMO_PRACTITIONER_TELEGRAM_IDS = (2001, 2002)


@dataclass(frozen=True)
class DemoSeed:
    """What seeding added: counts, and who each demo practitioner is in the chat."""

    session_types: int
    practitioners: int
    chat_users: tuple[tuple[str, int], ...]  # (practitioner name, Telegram id), booking-list order


def practitioner_chat_users() -> tuple[tuple[str, int], ...]:
    """(demo practitioner, simulated Telegram id), in the order the booking chat lists them."""
    return tuple(zip(demo_therapist_names(), DEMO_PRACTITIONER_TELEGRAM_IDS, strict=False))


async def seed_demo(runtime: Runtime) -> DemoSeed:
    """``smiling-steps demo``: add whatever demo data is missing, linked to the chat's personas."""
    types, therapists = await seed_demo_data(runtime.uow(), telegram_user_ids=DEMO_PRACTITIONER_TELEGRAM_IDS)
    return DemoSeed(types, therapists, practitioner_chat_users())


async def seed_if_empty(runtime: Runtime) -> DemoSeed | None:
    """``serve`` in local mode: seed an empty database (no practitioner, no session type); else None."""
    added = await seed_demo_data_if_empty(runtime.uow(), telegram_user_ids=DEMO_PRACTITIONER_TELEGRAM_IDS)
    return None if added is None else DemoSeed(*added, practitioner_chat_users())


def banner(settings: Settings, seeded: DemoSeed | None, admin_line: str) -> str:
    """The few lines ``serve`` prints once started; ``admin_line``: the admin URL (and password)."""
    base = f"http://127.0.0.1:{settings.port}" if settings.local_mode else settings.base_url
    head = f"Smiling Steps is listening on http://{settings.bind_host}:{settings.port}"
    if not settings.local_mode:
        return f"{head} (M-Pesa: {settings.mpesa_environment})\n  Admin site: {admin_line}"
    lines = [
        f"{head} — local mode: M-Pesa, Telegram, SMS and e-mail are simulated, no real money moves.",
        f"  Open the phone simulator:  {base}/sim/",
        f"  Admin site:                {admin_line}",
        f"  E-mail the service sent:   {base}/sim/mail/",
        f"  SMS the service sent:      {base}/sim/at/",
    ]
    if seeded is not None:
        who = ", ".join(f"{name} = chat user {uid}" for name, uid in seeded.chat_users)
        lines.append(
            f"  Demo data added to the empty database: {seeded.session_types} session types, "
            f"{seeded.practitioners} practitioners ({who})."
        )
    lines.append(f"  Scripted tour in another terminal: smiling-steps demo --scenario happy --url {base}")
    lines.append("  Stop with Ctrl+C.")
    return "\n".join(lines)
