"""Webhook intake: verify, store by id, hand to a job, answer. Nothing slow happens here.

The signature is checked against the raw body before it is parsed or stored.
A verified event is stored by its id in the same transaction that records it
as received; only a first delivery, or a redelivery of an event whose
processing failed, is handed to a job.

Deliveries that arrive while a batch is being stored wait for the next one:
one transaction and one queue round trip serve all of them (group commit),
so a burst of deliveries costs a few commits, not one per delivery. A lone
delivery is stored at once.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from server.billing.events import parse_event
from server.billing.provider import BillingProvider
from server.store import subscriptions as store
from server.store.subscriptions import Delivery, Receipt

MAX_BATCH = 500


class NotQueued(RuntimeError):
    """The event is stored but no job could be queued; Stripe should deliver it again."""


@dataclasses.dataclass(frozen=True)
class _Waiting:
    delivery: Delivery
    answer: asyncio.Future


class Intake:
    def __init__(self, engine: AsyncEngine, provider: BillingProvider,
                 send: Callable[[list[str]], Awaitable[None]]) -> None:
        self.engine = engine
        self.provider = provider
        self.send = send
        self._waiting: list[_Waiting] = []
        self._storing: asyncio.Task | None = None

    async def receive(self, body: bytes, signature: str | None) -> Receipt:
        """Raises BadSignature or BadEvent (answer 400) before anything is stored."""
        self.provider.verify_webhook(body, signature)
        event = parse_event(body)
        waiting = _Waiting(Delivery(event.id, event.type, body.decode()),
                           asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_all(), name="webhook-intake")
        return await waiting.answer

    async def _store_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                results = await self._store(batch)
            except Exception as exc:
                results = [exc] * len(batch)
            for waiting, result in zip(batch, results):
                if waiting.answer.done():
                    continue
                if isinstance(result, Exception):
                    waiting.answer.set_exception(result)
                else:
                    waiting.answer.set_result(result)

    async def _store(self, batch: list[_Waiting]) -> list[Receipt | Exception]:
        receipts = await store.receive_events(self.engine, [w.delivery for w in batch])
        to_process = [w.delivery.event_id for w, r in zip(batch, receipts)
                      if r in (Receipt.NEW, Receipt.RETRY)]
        if not to_process:
            return list(receipts)
        try:
            await self.send(to_process)
        except Exception as exc:
            await store.mark_unqueued(self.engine, to_process, f"could not be queued: {exc!r}")
            failed = NotQueued(str(exc))
            return [failed if r in (Receipt.NEW, Receipt.RETRY) else r for r in receipts]
        return list(receipts)
