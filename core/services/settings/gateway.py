"""A Daraja gateway that follows the saved M-Pesa settings: one pooled ``DarajaClient`` per
configuration, chosen per call, so a saved credential or mode is used by the next payment.

A payment is pushed (and later queried) with the configuration of the mode it was created
in (``route_for(attempt.environment)``): a sandbox attempt retried after a switch to
production still goes to the sandbox, never to real money.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from core.mpesa import ConnectivityResult, DarajaClient, StkPushAccepted, StkQueryResult
from core.services.settings.mpesa import MpesaConfig, MpesaSettings

log = logging.getLogger(__name__)

ClientFactory = Callable[[MpesaConfig], DarajaClient]


class StkGateway(Protocol):
    """The two Daraja calls a payment needs (the payment engine calls it ``DarajaGateway``)."""

    async def stk_push(
        self,
        *,
        phone: str,
        amount: int,
        callback_url: str,
        account_reference: str = ...,
        transaction_desc: str,
    ) -> StkPushAccepted: ...

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult: ...


@dataclass(frozen=True)
class MpesaRoute:
    """Where one payment goes: its mode, the client for that mode's credentials, its callback base."""

    environment: str
    gateway: StkGateway
    callback_base_url: str


@runtime_checkable
class MpesaRouter(Protocol):
    """A gateway that can say which mode is active and route each mode to its own credentials."""

    async def active_environment(self) -> str: ...

    async def active_route(self) -> MpesaRoute: ...

    async def route_for(self, environment: str) -> MpesaRoute: ...


def default_client_factory(config: MpesaConfig) -> DarajaClient:
    return DarajaClient(
        base_url=config.base_url,
        short_code=config.short_code or "",
        passkey=config.passkey or "",
        consumer_key=config.consumer_key or "",
        consumer_secret=config.consumer_secret or "",
        till_number=config.till_number,
    )


class ConfiguredDaraja:
    """DarajaGateway + MpesaRouter over ``MpesaSettings``; clients are cached by configuration."""

    def __init__(
        self, settings: MpesaSettings, client_factory: ClientFactory = default_client_factory
    ) -> None:
        self.settings = settings
        self._factory = client_factory
        self._clients: dict[str, DarajaClient] = {}
        self._lock = asyncio.Lock()

    async def active_environment(self) -> str:
        return await self.settings.active_environment()

    async def route_for(self, environment: str) -> MpesaRoute:
        config = await self.settings.config_for(environment)
        return MpesaRoute(environment, await self.client_for(config), config.callback_base_url)

    async def active_route(self) -> MpesaRoute:
        config = await self.settings.active_config()
        return MpesaRoute(config.environment, await self.client_for(config), config.callback_base_url)

    async def client_for(self, config: MpesaConfig) -> DarajaClient:
        """The client of this exact configuration (its OAuth token is kept between payments)."""
        key = config.fingerprint
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Earlier clients stay open until aclose(): a push may still be using one.
                client = self._clients[key] = self._factory(config)
                log.info("daraja client built", extra={"environment": config.environment})
            return client

    async def check_connectivity(self, environment: str | None = None) -> ConnectivityResult:
        """Property 41: a fresh OAuth token with the (active or given) mode's credentials."""
        config = await (
            self.settings.config_for(environment) if environment else self.settings.active_config()
        )
        return await (await self.client_for(config)).check_connectivity()

    # -- DarajaGateway, on the active configuration (for callers that do not route) ---------

    async def stk_push(self, **kwargs: Any) -> StkPushAccepted:
        return await (await self.active_route()).gateway.stk_push(**kwargs)

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        return await (await self.active_route()).gateway.stk_query(checkout_request_id)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
