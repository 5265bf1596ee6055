"""All configuration, read once from `VECTORGATE_*` environment variables and `.env`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"

# The kinds VECTORGATE_CONVERT_TO_TEXT may name (the upload kinds' names).
CONVERTIBLE_TO_TEXT = ("docx", "pptx", "json")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VECTORGATE_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str = ""
    encryption_keys: SecretStr = SecretStr("")
    openai_base_url: str = ""
    temp_dir: Path | None = None

    max_files_per_request: int = Field(default=10, ge=1)
    max_concurrent_uploads_per_org: int = Field(default=100, ge=1)
    upstream_concurrency: int = Field(default=5, ge=1)
    upstream_max_retries: int = Field(default=3, ge=0)
    batch_timeout_s: float = Field(default=600, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = []
    # Bearer tokens of the admin API (SPEC 9.3), comma-separated; empty: the API is off.
    # Two at once rotate one: add the new, move operators over, remove the old.
    admin_tokens: Annotated[list[SecretStr], NoDecode] = []
    # Base URLs a credential may name for its own OpenAI-compatible upstream (SPEC 12);
    # empty: every credential uses `openai_base_url`.
    upstream_allowed_base_urls: Annotated[list[str], NoDecode] = []
    # Webhooks (SPEC 10): the delays between a delivery's attempts (1 + N attempts),
    # how long one attempt may take, how long a rotated secret still signs, and whether
    # receivers may be private addresses and plain http (development, tests, one network).
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    ]
    # At most 30 s: a dead worker's lease (lookup + timeout + 15 s) must end within the
    # 60 s in which SPEC 10.3 resumes an interrupted delivery.
    webhook_timeout_s: float = Field(default=10, gt=0, le=30)
    webhook_secret_overlap_s: float = Field(default=86400, ge=0)
    webhook_allow_private: bool = False

    # Not in the public contract: knobs for tests and unusual deployments.
    upstream_timeout_s: float = Field(default=600, gt=0)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    upload_slot_lease_s: float = Field(default=120, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    poller_lease_s: float = Field(default=30, gt=0)
    # Upstreams other than OpenAI (SPEC 12): kinds sent as Markdown/text ("docx", "pptx",
    # "json"). Empty by default: OpenAI parses all three, and their originals index best.
    convert_to_text: Annotated[list[str], NoDecode] = []
    # First retry of an upstream delete that failed (doubling, at most 10 minutes apart).
    compensation_backoff_s: float = Field(default=5, gt=0)
    # Lease of a running request's Idempotency-Key, renewed while it runs: a retry after
    # its worker died waits at most this long.
    idempotency_lease_s: float = Field(default=60, gt=0)
    # How long an upload with on_duplicate=skip waits for a concurrent request uploading
    # the same file before it answers 409 (SPEC 11.2; see vector_stores/duplicates.py).
    duplicate_wait_s: float = Field(default=10, gt=0, le=60)
    # Upstream calls a client waits on, and the purge of expired rows:
    # OpenAI answers these small reads and deletes in well under a second; 10 s is ample.
    interactive_upstream_timeout_s: float = Field(default=10, gt=0)
    # The status refresh is best effort (the poller gets there): answer from the database.
    status_refresh_timeout_s: float = Field(default=2, gt=0)
    # The live status stream (SPEC 10.4). Streams one organization may hold open at once
    # in each worker: each holds a connection and reads the database every interval.
    max_event_streams_per_org: int = Field(default=20, ge=1)
    # Seconds between two reads of a stream's records (one short query each).
    event_stream_interval_s: float = Field(default=1.0, gt=0)
    # Longest silence of a stream before a comment line (SPEC 10.4: at least every 15 s).
    event_stream_keep_alive_s: float = Field(default=15, gt=0, le=15)
    # A stream ends at the latest this long after the batch deadline (the poller's rounds
    # after it), or when the caller's key or token expires.
    event_stream_grace_s: float = Field(default=60, ge=0)
    # Nothing reads expired idempotency keys and slots; a minute keeps their tables small.
    expired_rows_purge_interval_s: float = Field(default=60, gt=0)
    # Fair sharing: what one organization's requests may take of the machine.
    # Temp space (request bodies being received) per organization, across workers and
    # replicas; unset: the largest valid request plus a quarter, so a lone one always fits.
    max_staged_bytes_per_org: int | None = Field(default=None, ge=1)
    # Content budgets: the worker processes that check and convert uploaded files.
    # 3 organizations' files worked on at once; ~50 MB each (more only queue for CPU).
    content_workers: int = Field(default=3, ge=1)
    # Below content_workers, so one organization's files never take every worker.
    content_workers_per_org: int = Field(default=1, ge=1)
    # The worst file within every cap takes ~2 s of CPU (see uploads/xlsx.py); 15
    # times that leaves room for a busy machine, and stops anything the caps missed.
    content_deadline_s: float = Field(default=30, gt=0)

    # Transport limits and failure shapes: bounds applied before any work is done.
    # A credential or a store registration is under 1 KiB; 64 KiB leaves room, floods stop.
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Request line plus headers; browsers send a few KiB, nginx's default buffers hold 32 KiB.
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    # Time to send a request's head: clients need milliseconds, a slowloris needs minutes.
    header_timeout_s: float = Field(default=20, gt=0)
    # Longest silence while a body is read (Apache mod_reqtimeout's body timeout is 20 s).
    body_idle_timeout_s: float = Field(default=20, gt=0)
    # Slowest average body rate once the grace period is over (mod_reqtimeout's MinRate=500).
    body_min_rate_bytes_s: int = Field(default=500, ge=0)
    # Seconds of waiting for body bytes before the rate is judged: a slow start is fine.
    body_rate_grace_s: float = Field(default=20, ge=0)
    # Idle seconds of a kept-alive connection: uvicorn's default; proxies keep their own pools.
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    # Open connections per worker; also kept below half the fd limit (see server.py).
    max_connections: int = Field(default=1000, ge=1)
    # Free space kept on the temp dir (and SQLite's dir): ten 50 MB files stage 0.5 GiB.
    min_free_disk_bytes: int = Field(default=1024**3, ge=0)

    @field_validator("cors_origins", "upstream_allowed_base_urls", "convert_to_text", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _non_negative_delays(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(delay) or delay < 0 for delay in value):
            raise ValueError("retry delays are seconds, none of them negative")
        return value

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str | SecretStr):
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            return [SecretStr(item.strip()) for item in text.split(",") if item.strip()]
        return value

    @field_validator("convert_to_text")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        kinds = [kind.lower() for kind in value]
        unknown = [kind for kind in kinds if kind not in CONVERTIBLE_TO_TEXT]
        if unknown:
            raise ValueError(
                f"cannot convert {', '.join(unknown)} to text; "
                f"choose from {', '.join(CONVERTIBLE_TO_TEXT)}"
            )
        return kinds

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'vectorgate.db'}"

    @property
    def resolved_temp_dir(self) -> Path:
        return self.temp_dir or self.data_dir / "tmp"

    @property
    def resolved_openai_base_url(self) -> str:
        return self.openai_base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL

    @property
    def resolved_max_staged_bytes_per_org(self) -> int:
        return self.max_staged_bytes_per_org or self.max_request_bytes * 5 // 4

    @property
    def max_request_bytes(self) -> int:
        """The largest body a valid upload request can have (all files at the top limit)."""
        from vectorgate.uploads.filetypes import MAX_FILE_BYTES

        # base64 inflates by 4/3; line breaks and escapes some encoders add (GNU base64
        # wraps every 76 characters, .NET writes `\u002B`) take up to ~8% more; framing
        # gets 64 KiB per file.
        per_file = MAX_FILE_BYTES * 4 // 3 * 110 // 100 + 64 * 1024
        return self.max_files_per_request * per_file
