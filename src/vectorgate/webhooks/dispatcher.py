"""Delivery (SPEC 10.3): pending deliveries to their receivers, signed, at least once.

Every worker of every replica runs one dispatcher, apart from requests and the poller.
It finds due deliveries in the database and takes each with a lease (a conditional
UPDATE, as the poller takes batches), so one attempt is made by one worker; a worker
that dies stops holding its leases, and once they run out another worker tries again.
Attempts run concurrently, at most `MAX_IN_FLIGHT` per process and `MAX_IN_FLIGHT_PER_ORG`
of them for one organization, so receivers that hang for their whole timeout hold up
their own organization's deliveries and nobody else's.

Each attempt checks the receiver's URL again (`destinations.check_destination`) and
connects to an address it checked, never re-resolving the name; redirects are not
followed; the response's body is never read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from vectorgate import __version__
from vectorgate.db import utcnow, write_transaction
from vectorgate.observability import (
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_LAG,
    WEBHOOK_QUEUE_DEPTH,
)
from vectorgate.security.encryption import Keyring, Secret
from vectorgate.settings import Settings
from vectorgate.webhooks.destinations import (
    RESOLVE_TIMEOUT_S,
    Destination,
    DestinationRefused,
    IPAddress,
    Resolver,
    check_destination,
    system_resolver,
)
from vectorgate.webhooks.events import envelope
from vectorgate.webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from vectorgate.webhooks.service import signing_secrets

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
MAX_IN_FLIGHT_PER_ORG = 4
# How often an idle dispatcher looks for due deliveries: most of a delivery's lag.
IDLE_POLL_S = 0.25
# How often the queue depth gauge is counted.
_DEPTH_EVERY_S = 5.0
_ERROR_LENGTH = 500  # webhook_deliveries.last_error
_MAX_BODY_READ = 16 * 1024
USER_AGENT = f"vectorgate-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: a 2xx (`delivered`), or why not."""

    delivered: bool
    status_code: int | None
    error: str | None


def sign(secrets: list[Secret], event_id: str, timestamp: datetime, body: str) -> str:
    """`v1,<signature>` under each secret, space-separated (Standard Webhooks)."""
    return " ".join(Webhook(secret.reveal()).sign(event_id, timestamp, body) for secret in secrets)


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        settings: Settings,
        *,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._settings = settings
        self._resolver = resolver
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A lease outlives the longest attempt: the name's lookup, then the timeout.
        self._lease = timedelta(seconds=RESOLVE_TIMEOUT_S + settings.webhook_timeout_s + 15)
        self._in_flight: dict[asyncio.Task[None], str] = {}  # task -> organization
        self._next_depth = 0.0
        # Proxies from the environment are ignored: a proxy would connect to a name of
        # its own choosing, past the address check.
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(settings.webhook_timeout_s),
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=8),
        )

    async def run_forever(self) -> None:
        try:
            while True:
                try:
                    started = await self.run_once()
                except Exception:
                    log.exception("webhook dispatch round failed; retrying")
                    started = 0
                if started:
                    continue
                if self._in_flight:
                    # Nothing more may start until an attempt ends (this process's room,
                    # or an organization's share), or new work may have come: look again
                    # at whichever is first.
                    await asyncio.wait(
                        self._in_flight, timeout=IDLE_POLL_S, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(IDLE_POLL_S)
        finally:
            for task in self._in_flight:
                task.cancel()
            await self.settle()
            await self.aclose()

    async def settle(self) -> None:
        """Wait for the attempts in flight to end (their outcomes recorded)."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run_once(self) -> int:
        """Take the due deliveries there is room for and start an attempt for each."""
        await self._count_queue()
        claimed = await self._claim()
        for delivery, event, webhook in claimed:
            task = asyncio.create_task(
                self.attempt(delivery, event, webhook), name=f"webhook {delivery.id}"
            )
            self._in_flight[task] = delivery.organization_id
            task.add_done_callback(self._in_flight.pop)
        return len(claimed)

    async def _claim(self) -> list[tuple[WebhookDelivery, Event, WebhookEndpoint]]:
        """The due deliveries there is room for, leased to this dispatcher, each with its
        event and webhook. An attempt counts from here: one cut short by a crash too."""
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return []
        taken = Counter(self._in_flight.values())  # attempts in flight per organization
        busy = [org for org, count in taken.items() if count >= MAX_IN_FLIGHT_PER_ORG]
        now = utcnow()
        lease_free = or_(
            WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now
        )
        due = (
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            lease_free,
        )
        query = select(WebhookDelivery.id, WebhookDelivery.organization_id).where(*due)
        if busy:
            query = query.where(WebhookDelivery.organization_id.not_in(busy))
        async with self._sessionmaker() as session:
            candidates = (
                await session.execute(
                    query.order_by(WebhookDelivery.next_attempt_at).limit(room * 2)
                )
            ).all()
        chosen: list[str] = []
        for delivery_id, organization_id in candidates:
            if len(chosen) >= room or taken[organization_id] >= MAX_IN_FLIGHT_PER_ORG:
                continue
            chosen.append(delivery_id)
            taken[organization_id] += 1
        if not chosen:
            return []
        # One statement takes them all; a delivery another worker took meanwhile is not
        # due any more and stays out.
        async with write_transaction(self._sessionmaker) as session:
            claimed = await session.scalars(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(chosen), *due)
                .values(
                    attempts=WebhookDelivery.attempts + 1,
                    lease_owner=self.owner,
                    lease_expires_at=now + self._lease,
                )
                .returning(WebhookDelivery.id)
            )
            ids = list(claimed)
            found = await session.execute(
                select(WebhookDelivery, Event, WebhookEndpoint)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id.in_(ids))
            )
            return [(delivery, event, webhook) for delivery, event, webhook in found.all()]

    async def _count_queue(self) -> None:
        now = time.monotonic()
        if now < self._next_depth:
            return
        self._next_depth = now + _DEPTH_EVERY_S
        async with self._sessionmaker() as session:
            depth = await session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == "pending")
            )
        WEBHOOK_QUEUE_DEPTH.set(depth or 0)

    async def attempt(
        self, delivery: WebhookDelivery, event: Event, webhook: WebhookEndpoint
    ) -> None:
        """One attempt of a delivery this dispatcher holds the lease of, and its outcome."""
        try:
            body = json.dumps(envelope(event), separators=(",", ":"), ensure_ascii=False)
            outcome = await self._send(
                webhook.url, event.id, body, signing_secrets(self._keyring, webhook)
            )
            await self._record(delivery, event, outcome)
        except Exception:
            # Its lease runs out and another round tries again.
            log.exception("webhook delivery %s could not be attempted", delivery.id)

    async def _send(self, url: str, event_id: str, body: str, secrets: list[Secret]) -> Outcome:
        timeout_s = self._settings.webhook_timeout_s
        try:
            destination = await check_destination(
                url, allow_private=self._settings.webhook_allow_private, resolver=self._resolver
            )
        except DestinationRefused as refused:
            return Outcome(False, None, refused.reason)
        timestamp = utcnow().replace(microsecond=0)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": sign(secrets, event_id, timestamp, body),
        }
        content = body.encode()
        error = "no address to connect to"
        try:
            async with asyncio.timeout(timeout_s):
                for address in destination.addresses:
                    try:
                        return await self._post(destination, address, headers, content)
                    except httpx.ConnectError as exc:
                        error = f"could not connect to {address}: {_reason(exc)}"
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(False, None, f"no answer within {timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {_reason(exc)}")
        return Outcome(False, None, error)

    async def _post(
        self,
        destination: Destination,
        address: IPAddress,
        headers: dict[str, str],
        content: bytes,
    ) -> Outcome:
        """POST to `address`, with the URL's host in `Host` and in TLS (SNI, the
        certificate's name): the name is never looked up again."""
        url = httpx.URL(destination.url)
        request = self._http.build_request(
            "POST",
            url.copy_with(host=str(address)),
            headers={**headers, "host": url.netloc.decode("ascii")},
            content=content,
            extensions={"sni_hostname": destination.host},
        )
        response = await self._http.send(request, stream=True)
        try:
            # The answer is its status. A short body is read so that the connection can
            # be used again; a long one is not, and the connection is dropped with it.
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > _MAX_BODY_READ:
                    break
        finally:
            await response.aclose()
        code = response.status_code
        if 200 <= code < 300:
            return Outcome(True, code, None)
        if 300 <= code < 400:
            return Outcome(False, code, f"HTTP {code}: redirects are not followed")
        return Outcome(False, code, f"HTTP {code}")

    async def _record(self, delivery: WebhookDelivery, event: Event, outcome: Outcome) -> None:
        now = utcnow()
        attempts = delivery.attempts  # counted when the attempt was claimed
        schedule = self._settings.webhook_retry_schedule_s
        values: dict[str, object] = {
            "last_status_code": outcome.status_code,
            "last_error": outcome.error[:_ERROR_LENGTH] if outcome.error else None,
            "last_chance": False,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if outcome.delivered:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
            kind = "delivered"
        elif delivery.last_chance or attempts > len(schedule):
            values.update(status="failed", next_attempt_at=None)
            kind = "failed"
        else:
            values.update(next_attempt_at=now + timedelta(seconds=schedule[attempts - 1]))
            kind = "retrying"
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.lease_owner == self.owner,
                )
                .values(**values)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return  # deleted meanwhile, or the lease was lost and someone else retries
        WEBHOOK_DELIVERIES.labels(kind).inc()
        if outcome.delivered:
            WEBHOOK_DELIVERY_LAG.observe(max((now - event.created_at).total_seconds(), 0))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
