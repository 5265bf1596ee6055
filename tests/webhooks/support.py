"""Helpers of the webhook tests that run their own `vectorgate serve`."""

from __future__ import annotations

from typing import Any

import httpx

from vectorgate.testing.receiver import Receiver
from vectorgate.testing.service import RunningService, Tenant


def add_webhook(running: RunningService, tenant: Tenant, receiver: Receiver) -> dict[str, Any]:
    response = httpx.post(
        f"{running.base_url}/v1/organizations/{tenant.org_id}/webhooks",
        json={"url": receiver.url},
        headers=tenant.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
