"""The dispatcher's destination rules at delivery time (SPEC 10.1) and its fairness.

In-process, against a fresh database of each backend: the resolver is the test's, so a
name can change its addresses between a webhook's creation and its delivery (DNS
rebinding), and the receiver is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import CLI
from vectorgate.db import create_engine, create_sessionmaker, utcnow
from vectorgate.migrate import upgrade_to_head
from vectorgate.organizations.service import create_organization
from vectorgate.security.encryption import Keyring, generate_key
from vectorgate.settings import Settings
from vectorgate.testing.receiver import receiving
from vectorgate.webhooks.destinations import Destination, parse_url
from vectorgate.webhooks.dispatcher import MAX_IN_FLIGHT_PER_ORG, Dispatcher
from vectorgate.webhooks.events import RETENTION, purge_old
from vectorgate.webhooks.models import Event, WebhookDelivery
from vectorgate.webhooks.service import create_webhook, ping

pytestmark = pytest.mark.asyncio

PUBLIC = ipaddress.ip_address("93.184.216.34")


@pytest.fixture
def fresh_url(empty_database_url: str) -> str:
    upgrade_to_head(empty_database_url)
    return empty_database_url


@pytest_asyncio.fixture
async def fresh(fresh_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Deliveries of this test only: a dispatcher takes whatever is due."""
    engine = create_engine(fresh_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@dataclass
class Resolver:
    """Answers every name with `addresses`, counting the lookups."""

    addresses: Sequence[str]
    lookups: int = 0

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups += 1
        if not self.addresses:
            raise OSError("no such name")
        return self.addresses


async def webhook_with_ping(
    sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring, url: str, org: str = ""
) -> tuple[str, str]:
    """(organization, event id): a webhook created for `url` as if its host had resolved
    to a public address, and a ping for it."""
    scheme, host, port = parse_url(url, allow_private=True)
    async with sessionmaker() as session, session.begin():
        if not org:
            org = (await create_organization(session, "hooked", CLI)).id
        issued = await create_webhook(
            session,
            keyring,
            org,
            Destination(url, scheme, host, port, (PUBLIC,)),
            event_types=None,
            description=None,
            actor=CLI,
        )
        return org, await ping(session, org, issued.record.id)


async def delivery_of(
    sessionmaker: async_sessionmaker[AsyncSession], event_id: str
) -> WebhookDelivery:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
        )
        assert found is not None
        return found


async def deliver_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    resolver: Resolver,
    *,
    allow_private: bool,
) -> None:
    settings = Settings(
        webhook_allow_private=allow_private,
        webhook_timeout_s=2,
        webhook_retry_schedule_s=[60],
    )
    dispatcher = Dispatcher(sessionmaker, keyring, settings, resolver=resolver)
    try:
        assert await dispatcher.run_once() >= 1
        await dispatcher.settle()
    finally:
        await dispatcher.aclose()


async def test_a_name_that_rebinds_to_a_private_address_is_refused_at_delivery(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    keyring = Keyring([generate_key()])
    _, event_id = await webhook_with_ping(fresh, keyring, "https://hooks.example.com/in")
    resolver = Resolver(["10.1.2.3"])
    await deliver_once(fresh, keyring, resolver, allow_private=False)
    delivery = await delivery_of(fresh, event_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error is not None
    assert "not a public address" in delivery.last_error
    assert "10.1.2.3" in delivery.last_error
    assert delivery.next_attempt_at is not None  # retried like any failed attempt


async def test_a_name_that_no_longer_resolves_is_a_failed_attempt(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    keyring = Keyring([generate_key()])
    _, event_id = await webhook_with_ping(fresh, keyring, "https://gone.example.com/in")
    await deliver_once(fresh, keyring, Resolver([]), allow_private=False)
    delivery = await delivery_of(fresh, event_id)
    assert delivery.attempts == 1
    assert delivery.last_error == "url's host gone.example.com does not resolve"


async def test_delivery_connects_to_the_address_it_checked_and_names_the_host(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    keyring = Keyring([generate_key()])
    with receiving() as receiver:
        # `.invalid` never resolves (RFC 6761): only the test's resolver knows it.
        url = f"http://receiver.invalid:{receiver.port}/hook"
        _, event_id = await webhook_with_ping(fresh, keyring, url)
        resolver = Resolver(["127.0.0.1"])
        await deliver_once(fresh, keyring, resolver, allow_private=True)
        (received,) = receiver.snapshot()
    assert resolver.lookups == 1  # looked up once, connected to that address
    assert received.headers["host"] == f"receiver.invalid:{receiver.port}"
    assert received.webhook_id == event_id
    delivery = await delivery_of(fresh, event_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)


async def test_one_organization_takes_at_most_its_share_of_attempts_at_once(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    keyring = Keyring([generate_key()])
    with receiving() as receiver:
        receiver.delay_s = 1.5
        url = f"http://receiver.invalid:{receiver.port}/hook"
        busy, _ = await webhook_with_ping(fresh, keyring, url)
        for _ in range(MAX_IN_FLIGHT_PER_ORG * 3):
            await webhook_with_ping(fresh, keyring, url, org=busy)
        quiet, quiet_event = await webhook_with_ping(fresh, keyring, url)
        settings = Settings(webhook_allow_private=True, webhook_timeout_s=5)
        dispatcher = Dispatcher(fresh, keyring, settings, resolver=Resolver(["127.0.0.1"]))
        try:
            await dispatcher.run_once()
            async with fresh() as session:
                leased = dict(
                    (
                        await session.execute(
                            select(WebhookDelivery.organization_id, func.count())
                            .where(WebhookDelivery.lease_owner == dispatcher.owner)
                            .group_by(WebhookDelivery.organization_id)
                        )
                    ).all()
                )
            await dispatcher.settle()
        finally:
            await dispatcher.aclose()
    # The quiet organization's ping went out in the first round, beside the busy one's
    # share, although the busy one's many deliveries were due before it.
    assert leased == {busy: MAX_IN_FLIGHT_PER_ORG, quiet: 1}
    assert (await delivery_of(fresh, quiet_event)).status == "delivered"


async def test_finished_deliveries_and_their_events_go_after_the_retention(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    keyring = Keyring([generate_key()])
    url = "https://hooks.example.com/in"
    org, old_delivered = await webhook_with_ping(fresh, keyring, url)
    _, old_pending = await webhook_with_ping(fresh, keyring, url, org=org)
    _, new_delivered = await webhook_with_ping(fresh, keyring, url, org=org)
    long_ago = utcnow() - RETENTION - timedelta(hours=1)
    async with fresh() as session, session.begin():
        for event_id, status, created in (
            (old_delivered, "delivered", long_ago),
            (old_pending, "pending", long_ago),
            (new_delivered, "delivered", utcnow()),
        ):
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.event_id == event_id)
                .values(status=status, created_at=created)
            )
            await session.execute(
                update(Event).where(Event.id == event_id).values(created_at=created)
            )
    assert await purge_old(fresh) == 2  # the old delivered one and its event
    async with fresh() as session:
        events = set(await session.scalars(select(Event.id)))
        kept = set(await session.scalars(select(WebhookDelivery.event_id)))
    assert events == kept == {old_pending, new_delivered}
    assert await purge_old(fresh) == 0
