"""Saved M-Pesa settings are cached briefly for payments, and a change made here is used at once.

Another process's provider is stood in for by a second ``MpesaSettings`` on the same database
that the change does not reach through :func:`forget_saved` — only through its cache running out.
"""

from __future__ import annotations

from core.runtime import Runtime
from core.services.settings.crypto import SettingsCipher
from core.services.settings.mpesa import ENVIRONMENT_KEY, MpesaSettings, forget_saved
from core.services.settings.store import write_settings

KEY = "test-secret-key"


async def save_mode(runtime: Runtime, mode: str) -> None:
    """Write the saved mode as another process would (no forget_saved here)."""
    async with runtime.uow() as uow:
        await write_settings(
            uow.session, SettingsCipher(KEY), {ENVIRONMENT_KEY: mode}, secret_keys=frozenset(),
            actor="admin:1", now=runtime.clock(),
        )
        await uow.commit()


async def test_a_burst_of_payments_shares_one_read_of_the_saved_settings(runtime: Runtime) -> None:
    provider = MpesaSettings(runtime, SettingsCipher(KEY), ttl_s=3600)
    assert (await provider.active_config()).environment == "simulator"
    await save_mode(runtime, "sandbox")  # made elsewhere: this provider has not been told yet

    assert (await provider.active_config()).environment == "simulator"
    assert (await provider.overview()).active == "sandbox"  # the settings page always reads fresh


async def test_a_change_saved_in_this_process_is_used_by_the_next_payment(runtime: Runtime) -> None:
    provider = MpesaSettings(runtime, SettingsCipher(KEY), ttl_s=3600)
    assert (await provider.config_for("simulator")).environment == "simulator"
    await save_mode(runtime, "sandbox")
    forget_saved(runtime)  # what the admin settings page's change does after its commit

    assert (await provider.active_config()).environment == "sandbox"


async def test_another_process_uses_the_change_once_its_cache_runs_out(runtime: Runtime) -> None:
    provider = MpesaSettings(runtime, SettingsCipher(KEY), ttl_s=0)
    assert (await provider.active_config()).environment == "simulator"
    await save_mode(runtime, "sandbox")

    assert (await provider.active_config()).environment == "sandbox"
