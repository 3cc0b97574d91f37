"""The language a chat user is written to in: read once per turn, changed by /language or LUGHA.

A practitioner's choice is stored on their practitioner row, a client's on their client row;
the chat, the outbox notifications, the reminders and the e-mails all read it from there.
The person behind a chat user is found the same way the conversation finds them
(:func:`core.services.booking.queries.therapist_for_user`,
:func:`core.services.booking.lifecycle.find_or_create_client`).
"""

from __future__ import annotations

from sqlalchemy import Select, select, update

from core.db.models import Client, Therapist
from core.domain.phone import InvalidPhoneNumber, normalise_phone
from core.i18n import LANGUAGE_CODES
from core.runtime import Runtime
from core.services.booking.lifecycle import find_or_create_client
from core.services.booking.queries import therapist_for_user


def _client_query(channel: str, user_key: str) -> Select[str | None] | None:
    """The select of the client behind a chat user (as find_or_create_client finds them), or None."""
    if channel == "telegram":
        if not user_key.isdigit():
            return None
        return select(Client.language).where(Client.telegram_user_id == int(user_key))
    try:
        msisdn = normalise_phone(user_key)
    except InvalidPhoneNumber:
        return None
    return (
        select(Client.language)
        .where(Client.phone == msisdn, Client.telegram_user_id.is_(None), Client.anonymised.is_(False))
        .order_by(Client.id)
        .limit(1)
    )


async def stored_language(runtime: Runtime, channel: str, user_key: str) -> str | None:
    """The language stored for the practitioner or client behind a chat user; None if none yet."""
    async with runtime.uow() as uow:
        session = uow.session
        if channel == "telegram" and user_key.isdigit():
            query = select(Therapist.language).where(
                Therapist.active.is_(True), Therapist.telegram_user_id == int(user_key)
            )
        else:
            query = select(Therapist.language).where(Therapist.active.is_(True), Therapist.phone == user_key)
        found = (await session.execute(query.order_by(Therapist.id).limit(1))).first()
        if found is None:
            client_query = _client_query(channel, user_key)
            found = (await session.execute(client_query)).first() if client_query is not None else None
    language = found[0] if found is not None else None
    return language if language in LANGUAGE_CODES else None


async def set_language(
    runtime: Runtime, channel: str, user_key: str, language: str, *, display_name: str | None = None
) -> None:
    """Store ``language`` for the practitioner behind a chat user, else for the client (created
    on first contact, as any conversation does)."""
    if language not in LANGUAGE_CODES:
        raise ValueError(f"unknown language {language!r}")
    therapist = await therapist_for_user(runtime, channel, user_key)
    async with runtime.uow() as uow:
        if therapist is not None:
            await uow.session.execute(
                update(Therapist).where(Therapist.id == therapist.id).values(language=language)
            )
            await uow.commit()
            return
    client = await find_or_create_client(runtime, channel, user_key, display_name)
    async with runtime.uow() as uow:
        await uow.session.execute(update(Client).where(Client.id == client.id).values(language=language))
        await uow.commit()


async def remember_first_language(
    runtime: Runtime, client_id: int, language: str, *, therapist: bool = False
) -> None:
    """Store the language a client's (``therapist``: a practitioner's) first conversation used,
    unless they already have one: later notifications are then written in it."""
    model = Therapist if therapist else Client
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(model).where(model.id == client_id, model.language.is_(None)).values(language=language)
        )
        await uow.commit()
