"""Webhook intake: verify, store by id, hand to a job, answer. Nothing slow happens here.

The signature is checked against the raw body before it is parsed or stored.
A verified event is stored by its id in the same transaction that records it
as received; only a first delivery, or a redelivery of an event whose
processing failed, is handed to a job.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from server.billing.events import parse_event
from server.billing.provider import BillingProvider
from server.store import subscriptions as store
from server.store.subscriptions import Receipt


class NotQueued(RuntimeError):
    """The event is stored but no job could be queued; Stripe should deliver it again."""


class Intake:
    def __init__(self, engine: AsyncEngine, provider: BillingProvider,
                 send: Callable[[str], Awaitable[None]]) -> None:
        self.engine = engine
        self.provider = provider
        self.send = send

    async def receive(self, body: bytes, signature: str | None) -> Receipt:
        """Raises BadSignature or BadEvent (answer 400) before anything is stored."""
        self.provider.verify_webhook(body, signature)
        event = parse_event(body)
        receipt = await store.receive_event(self.engine, event.id, event.type, body.decode())
        if receipt in (Receipt.NEW, Receipt.RETRY):
            try:
                await self.send(event.id)
            except Exception as exc:
                await store.mark_failed(self.engine, event.id, f"could not be queued: {exc!r}")
                raise NotQueued(str(exc)) from exc
        return receipt
