"""How many live status streams (SPEC 10.4) each organization holds open in this process.

A stream holds a connection and reads the database every second for minutes, so each
organization gets at most `VECTORGATE_MAX_EVENT_STREAMS_PER_ORG` at once per worker; past
it 429. Counted in memory: a slot lives exactly as long as its response, in this process,
so there is nothing to lease or recover after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vectorgate.errors import AppError, ErrorCode

# What a client waits before it tries again after a 429: a stream lasts minutes, so
# seconds are enough to find a slot freed by a closed one.
RETRY_AFTER_S = 5


@dataclass
class StreamSlots:
    """Open streams per organization in this process (one count per worker)."""

    counts: dict[str, int] = field(default_factory=dict)

    def take(self, organization_id: str, limit: int) -> Slot:
        count = self.counts.get(organization_id, 0)
        if count >= limit:
            raise AppError(
                429,
                ErrorCode.RATE_LIMITED,
                f"The organization has {limit} status streams open on this server; "
                "close one or try again later",
                details={"max_event_streams": limit},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.counts[organization_id] = count + 1
        return Slot(self, organization_id)


@dataclass
class Slot:
    slots: StreamSlots
    organization_id: str
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        left = self.slots.counts[self.organization_id] - 1
        if left:
            self.slots.counts[self.organization_id] = left
        else:
            del self.slots.counts[self.organization_id]
