"""The admin's "test connection" (Property 41): fetch a fresh Daraja OAuth token with the
chosen mode's credentials and report ok, latency and the error; the check itself is audited."""

from __future__ import annotations

from dataclasses import dataclass

from core.services import audit
from core.services.settings.gateway import ConfiguredDaraja
from core.services.settings.mpesa import CREDENTIAL_FIELDS, FIELD_LABELS


@dataclass(frozen=True)
class ConnectionReport:
    environment: str
    ok: bool
    latency_ms: float | None
    error: str | None


async def test_connection(
    gateway: ConfiguredDaraja, *, admin_id: int, environment: str | None = None
) -> ConnectionReport:
    """Run the check for ``environment`` (default: the active mode) and audit its outcome."""
    provider = gateway.settings
    config = await (provider.config_for(environment) if environment else provider.active_config())
    missing = [FIELD_LABELS[n] for n in CREDENTIAL_FIELDS if not config.value(n)]
    if missing:
        report = ConnectionReport(config.environment, False, None, f"not configured: {', '.join(missing)}")
    else:
        result = await (await gateway.client_for(config)).check_connectivity()
        report = ConnectionReport(config.environment, result.ok, result.latency_ms, result.error)
    async with provider.runtime.uow() as uow:
        await audit.record(
            uow.session,
            actor=f"admin:{admin_id}",
            action="settings.connectivity_tested",
            subject_type="settings",
            subject_id="mpesa",
            details={
                "environment": report.environment,
                "ok": report.ok,
                "latency_ms": report.latency_ms,
                "error": (report.error or "")[:200] or None,
            },
        )
        await uow.commit()
    return report
