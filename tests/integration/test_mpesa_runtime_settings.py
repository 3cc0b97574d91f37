"""M-Pesa mode and credentials saved by an admin: encrypted at rest, re-authenticated, and used by
the very next payment of every process without a restart (real Daraja simulator on 127.0.0.1)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from core.db.models import AuditEntry, PaymentAttempt, Setting
from core.domain.states import PaymentStatus
from core.services.ops.admins import create_admin
from core.services.settings.crypto import SettingsCipher, settings_key
from core.services.settings.mpesa import MpesaSettings
from core.services.settings.mpesa_changes import (
    SettingsRefused,
    change_mpesa_settings,
    parse_mpesa_form,
)
from tests.integration.test_dialog_support import book, build_world
from tests.support.payments import payment_stack

PASSWORD = "correct horse battery"
SUCCESS_PHONE = "0708374149"
ACCEPTED = (PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.PAID)  # pushed; perhaps settled already
NEW = {
    "consumer_key": "rotated-consumer-key-9f3a",
    "consumer_secret": "rotated-consumer-secret-77c1",
    "short_code": "600999",
    "passkey": "rotated-passkey-0d0d0d0d",
}


def simulator_form(**values: str) -> dict[str, str]:
    return {"environment": "simulator", **{f"simulator_{k}": v for k, v in values.items()}}


# Feature: mpesa-payment-integration, Property 45: Credentials Are Encrypted
async def test_a_saved_credential_is_used_by_the_next_payment_without_restart(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        first = await stack.approved_booking()
        before = await stack.services.payments.initiate_payment(first.id, first.client_id, SUCCESS_PHONE)
        assert before.status in ACCEPTED  # the simulator's callback may already have settled it
        assert stack.pushes()[-1]["body"]["BusinessShortCode"] == "174379"

        # Safaricom issues new credentials: the old ones stop working at once.
        sim = stack.daraja
        sim.consumer_key, sim.consumer_secret = NEW["consumer_key"], NEW["consumer_secret"]
        sim.short_code, sim.passkey = NEW["short_code"], NEW["passkey"]
        assert stack.services.mpesa is not None
        await change_mpesa_settings(
            stack.services.mpesa.settings,
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form(simulator_form(**NEW)),
        )

        second = await stack.approved_booking()
        after = await stack.services.payments.initiate_payment(second.id, second.client_id, SUCCESS_PHONE)
        assert after.status in ACCEPTED, after
        push = stack.pushes()[-1]
        assert push["status"] == 200 and push["body"]["BusinessShortCode"] == NEW["short_code"]
        assert stack.sim.requests("oauth")[-1]["status"] == 200  # the new key and secret were accepted
        await stack.wait_status(after.attempt_id, PaymentStatus.PAID)


# Feature: mpesa-payment-integration, Property 45: Credentials Are Encrypted
async def test_saved_credentials_are_stored_encrypted_and_never_in_the_audit_trail(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        assert stack.services.mpesa is not None
        await change_mpesa_settings(
            stack.services.mpesa.settings,
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form(simulator_form(**NEW)),
        )
        async with stack.runtime.uow() as uow:
            raw = (await uow.session.execute(text("SELECT key, value, encrypted FROM settings"))).all()
            trail = (await uow.session.scalars(select(AuditEntry))).all()
        stored = {key: (value, encrypted) for key, value, encrypted in raw}
        for name, plain in NEW.items():
            value, encrypted = stored[f"mpesa.simulator.{name}"]
            assert encrypted and plain not in value and plain[-6:] not in value
            assert SettingsCipher("test-secret-key-for-callbacks").decrypt(value) == plain
        exported = " ".join(str(entry.details) for entry in trail)
        assert all(plain not in exported for plain in NEW.values())
        changed = [e for e in trail if e.action == "settings.mpesa_changed"]
        assert changed and changed[-1].actor == f"admin:{admin_id}"
        assert "simulator.passkey" in changed[-1].details["changed"]


async def test_values_do_not_decrypt_under_another_secret_key_and_then_count_as_unreadable(
    database_url: str,
) -> None:
    async with payment_stack(database_url) as stack:
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        assert stack.services.mpesa is not None
        await change_mpesa_settings(
            stack.services.mpesa.settings,
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form({"environment": "simulator", "sandbox_consumer_key": "sandbox-key-1"}),
        )
        other = MpesaSettings(stack.runtime, SettingsCipher("a-different-secret-key"))
        config = await other.config_for("sandbox")
        assert config.consumer_key is None and config.sources["consumer_key"] == "unreadable"
        assert settings_key("a") != settings_key("b")


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
@pytest.mark.parametrize("password", ["wrong password!", ""])
async def test_a_mode_switch_with_a_wrong_password_changes_nothing(database_url: str, password: str) -> None:
    async with payment_stack(database_url) as stack:
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        provider = stack.services.mpesa.settings  # type: ignore[union-attr]
        form = {
            "environment": "sandbox",
            "sandbox_consumer_key": "k-1234",
            "sandbox_consumer_secret": "s-5678",
        }
        with pytest.raises(SettingsRefused, match="password"):
            await change_mpesa_settings(
                provider, admin_id=admin_id, current_password=password, request=parse_mpesa_form(form)
            )
        assert await provider.active_environment() == "simulator"
        async with stack.runtime.uow() as uow:
            assert (await uow.session.scalars(select(Setting))).all() == []
            refused = (
                await uow.session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "settings.mpesa_refused")
                )
            ).all()
        assert len(refused) == 1 and refused[0].actor == f"admin:{admin_id}"


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
async def test_switching_to_production_needs_production_credentials(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        provider = stack.services.mpesa.settings  # type: ignore[union-attr]
        partial = {"environment": "production", "production_consumer_key": "live-key-1"}
        with pytest.raises(SettingsRefused, match="consumer secret, business short code, passkey"):
            await change_mpesa_settings(
                provider, admin_id=admin_id, current_password=PASSWORD, request=parse_mpesa_form(partial)
            )
        full = {
            **partial,
            "production_consumer_secret": "live-secret-2",
            "production_short_code": "4123456",
            "production_passkey": "live-passkey-3",
        }
        # The callback base is still http://127.0.0.1: production needs https.
        with pytest.raises(SettingsRefused, match="callback base URL"):
            await change_mpesa_settings(
                provider, admin_id=admin_id, current_password=PASSWORD, request=parse_mpesa_form(full)
            )
        assert await provider.active_environment() == "simulator"
        full["production_callback_base_url"] = "https://pay.example.org/"
        done = await change_mpesa_settings(
            provider, admin_id=admin_id, current_password=PASSWORD, request=parse_mpesa_form(full)
        )
        assert done.previous == "simulator" and done.environment == "production"
        config = await provider.active_config()
        assert config.environment == "production" and config.callback_base_url == "https://pay.example.org"
        assert config.base_url == stack.sim.base_url  # MPESA_API_BASE_URL still overrides every mode


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("environment", "live", "must be one of"),
        ("sandbox_short_code", "12ab", "5 to 7 digits"),
        ("sandbox_consumer_key", "has space", "without spaces"),
        ("production_callback_base_url", "ftp://x", "http"),
        ("production_callback_base_url", "https://x.org/mpesa", "mpesa"),
    ],
)
def test_bad_form_values_are_refused_naming_the_field(field: str, value: str, message: str) -> None:
    form = {"environment": "simulator", field: value}
    with pytest.raises(SettingsRefused, match=message):
        parse_mpesa_form(form)


async def test_an_attempt_keeps_the_mode_it_was_made_in(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        booking = await stack.approved_booking()
        await change_mpesa_settings(
            stack.services.mpesa.settings,  # type: ignore[union-attr]
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form(
                {
                    "environment": "sandbox",
                    "sandbox_consumer_key": "simulator-consumer-key",
                    "sandbox_consumer_secret": "simulator-consumer-secret",
                }
            ),
        )
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert view.test_mode
        async with stack.runtime.uow() as uow:
            attempt = await uow.session.get_one(PaymentAttempt, view.attempt_id)
        assert attempt.environment == "sandbox"


# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
async def test_test_mode_marks_follow_the_attempts_mode_not_the_boot_mode(database_url: str) -> None:
    live = {"consumer_key": "live-key-1", "consumer_secret": "live-secret-2", "passkey": "live-passkey-3"}
    async with payment_stack(database_url) as stack:  # booted in simulator mode
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        sim = stack.daraja  # the simulator plays production Daraja, with production credentials
        sim.consumer_key, sim.consumer_secret, sim.passkey = (
            live["consumer_key"],
            live["consumer_secret"],
            live["passkey"],
        )
        sim.short_code = "4123456"
        form = {"environment": "production", "production_short_code": "4123456"}
        form |= {f"production_{k}": v for k, v in live.items()}
        form["production_callback_base_url"] = "https://pay.example.org"
        await change_mpesa_settings(
            stack.services.mpesa.settings,  # type: ignore[union-attr]
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form(form),
        )
        booking = await stack.approved_booking()
        # Phone ending in 5: the simulator sends no callback (it could not reach pay.example.org).
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, "0712345675")
        assert not view.test_mode
        attempt = await stack.attempt(view.attempt_id)
        assert attempt.environment == "production"
        callback_url = sim.transactions[attempt.checkout_request_id].callback_url
        assert callback_url.startswith("https://pay.example.org/hooks/lnm/")
        body = {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": attempt.merchant_request_id,
                    "CheckoutRequestID": attempt.checkout_request_id,
                    "ResultCode": 0,
                    "ResultDesc": "The service request is processed successfully.",
                    "CallbackMetadata": {
                        "Item": [
                            {"Name": "Amount", "Value": attempt.amount_kes},
                            {"Name": "MpesaReceiptNumber", "Value": "SLIVE00001"},
                            {"Name": "TransactionDate", "Value": 20261126101500},
                            {"Name": "PhoneNumber", "Value": 254712345675},
                        ]
                    },
                }
            }
        }
        response = await stack.post_callback(callback_url.rsplit("/", 1)[1], body)
        assert response.status_code == 200
        await stack.wait_status(attempt.id, PaymentStatus.PAID)
        confirmations = await stack.outbox(template="payment_confirmed_client")
        assert confirmations and all(row.data["test_mode"] is False for row in confirmations)


# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
# Feature: mpesa-payment-integration, Property 79: Sandbox Mode Uses Test Phone Numbers
async def test_the_chat_follows_a_switch_to_production_without_restart(database_url: str) -> None:
    async with payment_stack(database_url) as stack:  # booted in simulator mode
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        world = await build_world(stack.runtime, stack.services.payments)
        chat = world.chat()
        await book(chat, world)
        [booking] = await world.bookings()
        await world.therapist_chat().choose(f"v1:approve:{booking.id}")
        await chat.choose(f"v1:pay:{booking.id}")
        [ask] = chat.last
        assert ask.text.startswith("[TEST MODE]") and "254708374149" in ask.phone_suggestions

        sim = stack.daraja
        sim.consumer_key, sim.consumer_secret, sim.passkey, sim.short_code = "lk-1", "ls-2", "lp-3", "4123456"
        form = {
            "environment": "production",
            "production_consumer_key": "lk-1",
            "production_consumer_secret": "ls-2",
            "production_passkey": "lp-3",
            "production_short_code": "4123456",
            "production_callback_base_url": "https://pay.example.org",
        }
        await change_mpesa_settings(
            stack.services.mpesa.settings,  # type: ignore[union-attr]
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form(form),
        )
        await chat.choose(f"v1:pay:{booking.id}")
        [ask] = chat.last
        assert not ask.text.startswith("[TEST MODE]") and "254708374149" not in ask.phone_suggestions
        await chat.send("0712345675")  # no callback from the simulator (it cannot reach pay.example.org)
        assert chat.text.startswith("Check your phone") and "TEST MODE" not in chat.text
        assert stack.pushes()[-1]["body"]["BusinessShortCode"] == "4123456"


# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
async def test_the_approval_message_follows_the_saved_mode(database_url: str) -> None:
    async with payment_stack(database_url) as stack:  # booted in simulator mode
        admin_id = await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        world = await build_world(stack.runtime, stack.services.payments)
        first, second = world.chat(), world.chat()
        await book(first, world)
        [booking] = await world.bookings()
        await world.therapist_chat().choose(f"v1:approve:{booking.id}")
        form = {
            "environment": "production",
            "production_consumer_key": "lk-1",
            "production_consumer_secret": "ls-2",
            "production_passkey": "lp-3",
            "production_short_code": "4123456",
            "production_callback_base_url": "https://pay.example.org",
        }
        await change_mpesa_settings(
            stack.services.mpesa.settings,  # type: ignore[union-attr]
            admin_id=admin_id,
            current_password=PASSWORD,
            request=parse_mpesa_form(form),
        )
        await book(second, world)
        later = next(b for b in await world.bookings() if b.id != booking.id)
        await world.therapist_chat().choose(f"v1:approve:{later.id}")
        approvals = {
            row.dedupe_key: row.data["test_mode"]
            for row in await stack.outbox(template="booking_approved_client")
        }
        assert approvals == {
            f"booking:{booking.id}:approved:client": True,
            f"booking:{later.id}:approved:client": False,
        }
