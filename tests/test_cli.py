"""The `vectorgate` command, in-process, against a migrated database of each backend."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from vectorgate.audit.models import AuditEvent
from vectorgate.cli import main
from vectorgate.credentials.models import Credential
from vectorgate.credentials.service import reveal_key
from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.migrate import head_revision, upgrade_to_head
from vectorgate.security.encryption import Keyring, Secret, generate_key
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import run_cli_process, service_env
from vectorgate.webhooks.models import WebhookEndpoint

OPENAI_KEY = "sk-cli-test-0123456789abcdef"


Row = TypeVar("Row")


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """Each test its own migrated database: rotation must see only its own credentials."""
    upgrade_to_head(empty_database_url)
    return empty_database_url


@pytest.fixture
def cli(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    monkeypatch.setenv("VECTORGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VECTORGATE_DATABASE_URL", database_url)

    def run(*args: str, stdin: str = "", expect: int = 0) -> dict[str, Any]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main([*args, "--json"])
        out = capsys.readouterr().out
        assert code == expect, out
        result: dict[str, Any] = json.loads(out)
        return result

    return run


def stored(database_url: str, model: type[Row], row_id: str) -> Row:
    """The row `row_id` of `model`, read on a connection of its own."""

    async def load() -> Row:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                row = await session.get(model, row_id)
                assert row is not None
                return row
        finally:
            await engine.dispose()

    return asyncio.run(load())


def credential_ciphertext(database_url: str, credential_id: str) -> Credential:
    return stored(database_url, Credential, credential_id)


def test_orgs_keys_and_credentials_print_one_json_object(cli: Any) -> None:
    org = cli("orgs", "create", "Acme")
    assert org["id"].startswith("org_")
    assert len(org["id"]) == 28
    key = cli("api-keys", "create", "--org", org["id"], "--name", "ci")
    assert key["key"].startswith("vg_")
    assert key["prefix"] == key["key"][:11]
    credential = cli(
        "credentials", "create", "--org", org["id"], "--name", "main", stdin=OPENAI_KEY + "\n"
    )
    assert credential["key_hint"] == "sk-...cdef"
    assert OPENAI_KEY not in json.dumps(credential)


def test_unknown_org_is_an_error(cli: Any) -> None:
    result = cli("api-keys", "create", "--org", "org_" + "0" * 24, expect=1)
    assert "not found" in result["error"]


def test_revoke_by_prefix_then_again_is_an_error(cli: Any) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    key = cli("api-keys", "create", "--org", org)
    assert cli("api-keys", "revoke", key["prefix"])["revoked"] == [key["id"]]
    cli("api-keys", "revoke", key["prefix"], expect=1)


def test_credential_needs_a_key_on_stdin(cli: Any) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    assert (
        "standard input"
        in cli("credentials", "create", "--org", org, "--name", "x", expect=1)["error"]
    )


def test_commands_on_an_unmigrated_database_say_to_migrate(
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "not-yet"  # not even the data directory exists
    monkeypatch.setenv("VECTORGATE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("VECTORGATE_DATABASE_URL", empty_database_url)
    assert main(["orgs", "create", "Acme", "--json"]) == 1
    assert "run `vectorgate migrate`" in json.loads(capsys.readouterr().out)["error"]
    assert main(["migrate", "--json"]) == 0
    capsys.readouterr()
    assert main(["orgs", "create", "Acme", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"].startswith("org_")


def test_a_key_that_could_not_be_sent_in_a_header_is_refused(cli: Any) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    bad_key = "sk-has a space-0123456789"
    result = cli("credentials", "create", "--org", org, "--name", "x", stdin=bad_key, expect=1)
    assert "printable ASCII" in result["error"]
    assert bad_key not in json.dumps(result)


def test_rotation_moves_every_credential_to_the_first_key(
    cli: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", old)
    org = cli("orgs", "create", "Acme")["id"]
    cred = cli("credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]

    # New key first, old still there: the old ciphertext still decrypts; rotation re-encrypts.
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", f"{new},{old}")
    both = Keyring([new, old])
    assert reveal_key(both, credential_ciphertext(database_url, cred)).reveal() == OPENAI_KEY
    assert cli("credentials", "rotate")["rotated"] >= 1
    assert cli("credentials", "rotate")["rotated"] == 0

    # After rotation the old key can be dropped.
    rotated = credential_ciphertext(database_url, cred)
    assert reveal_key(Keyring([new]), rotated).reveal() == OPENAI_KEY


def webhook_under(database_url: str, keyring: Keyring, org: str, *secrets: str) -> str:
    """A webhook row whose current (and previous) secret `keyring` encrypted."""
    hook_id = "whk_" + hashlib.sha256(org.encode()).hexdigest()[:24]
    ciphertexts = [keyring.encrypt(Secret(s), associated_data=hook_id) for s in secrets]

    async def insert() -> None:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                session.add(
                    WebhookEndpoint(
                        id=hook_id,
                        organization_id=org,
                        url="https://hooks.example.com/in",
                        secret_ciphertext=ciphertexts[0],
                        previous_secret_ciphertext=ciphertexts[1],
                        previous_secret_expires_at=datetime.now(UTC) + timedelta(hours=1),
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())
    return hook_id


def test_rotation_moves_webhook_secrets_to_the_first_key_too(
    cli: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", old)
    org = cli("orgs", "create", "Acme")["id"]
    hook = webhook_under(database_url, Keyring([old]), org, "whsec_current", "whsec_previous")

    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", f"{new},{old}")
    assert cli("credentials", "rotate")["webhooks_rotated"] == 1
    assert cli("credentials", "rotate")["webhooks_rotated"] == 0

    # After rotation the old key can be dropped: both secrets open with the new one alone.
    record, only_new = stored(database_url, WebhookEndpoint, hook), Keyring([new])
    assert only_new.decrypt(record.secret_ciphertext, associated_data=hook).reveal() == (
        "whsec_current"
    )
    assert record.previous_secret_ciphertext is not None
    previous = only_new.decrypt(record.previous_secret_ciphertext, associated_data=hook)
    assert previous.reveal() == "whsec_previous"


def test_rotation_reports_webhooks_no_key_can_open(
    cli: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    hook = webhook_under(database_url, Keyring([generate_key()]), org, "whsec_a", "whsec_b")
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", generate_key())
    assert hook in cli("credentials", "rotate", expect=1)["error"]


def test_vector_store_register_creates_or_checks_upstream(
    cli: Any, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VECTORGATE_OPENAI_BASE_URL", fake.base_url)
    org = cli("orgs", "create", "Acme")["id"]
    cred = cli("credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]

    created = cli(
        "vector-stores", "register", "--org", org, "--credential", cred, "--create", "docs"
    )
    assert created["id"].startswith("vs_")
    assert created["name"] == "docs"

    existing = fake.create_vector_store(OPENAI_KEY, "existing")
    registered = cli(
        "vector-stores", "register", "--org", org, "--credential", cred, "--id", existing
    )
    assert registered["id"] == existing

    missing = cli(
        "vector-stores", "register", "--org", org, "--credential", cred, "--id", "vs_nope", expect=1
    )
    assert "not found" in missing["error"]
    again = cli(
        "vector-stores", "register", "--org", org, "--credential", cred, "--id", existing, expect=1
    )
    assert "already registered" in again["error"]


def test_migrate_reports_the_head_revision(cli: Any) -> None:
    assert cli("migrate")["revision"] == head_revision()


def credential_under_a_lost_key(cli: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A credential encrypted under a key the configuration then no longer has."""
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", generate_key())
    org = cli("orgs", "create", "Acme")["id"]
    cred: str = cli("credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", generate_key())
    return cred


def test_rotation_reports_credentials_no_key_can_open(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = credential_under_a_lost_key(cli, monkeypatch)
    assert cred in cli("credentials", "rotate", expect=1)["error"]


def test_register_works_in_a_fresh_process(
    database_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    """A new process imports only what the command needs: every model must still resolve."""
    env = service_env(tmp_path, database_url, fake.base_url)
    run = run_cli_process
    org = run(env, "orgs", "create", "Acme")["id"]
    cred = run(env, "credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]
    store = run(
        env, "vector-stores", "register", "--org", org, "--credential", cred, "--create", "docs"
    )
    assert store["id"].startswith("vs_")


def test_doctor_passes_on_a_healthy_installation_and_reaches_openai(
    cli: Any, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VECTORGATE_OPENAI_BASE_URL", fake.base_url)
    org = cli("orgs", "create", "Acme")["id"]
    cred = cli("credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]
    report = cli("doctor", "--org", org, "--credential", cred)
    assert report["ok"] is True
    assert set(report["checks"]) == {
        "temp_dir",
        "encryption_keys",
        "database",
        "migrations",
        "credentials",
        "upstream",
    }
    fake.rejected_keys.add(OPENAI_KEY)
    rejected = cli("doctor", "--org", org, "--credential", cred, expect=1)
    assert rejected["checks"]["upstream"].startswith("failed: OpenAI rejected")
    assert OPENAI_KEY not in json.dumps(rejected)


def test_doctor_fails_on_undecryptable_credentials(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = credential_under_a_lost_key(cli, monkeypatch)
    report = cli("doctor", expect=1)
    assert cred in report["checks"]["credentials"]


def test_doctor_fails_when_migrations_are_behind(
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VECTORGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VECTORGATE_DATABASE_URL", empty_database_url)
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["checks"]["database"] == "ok"
    assert "vectorgate migrate" in report["checks"]["migrations"]


def test_a_credential_may_name_an_allowed_base_url(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    args = ("credentials", "create", "--org", org, "--name", "llama")
    refused = cli(*args, "--base-url", "https://llm.internal/v1", stdin=OPENAI_KEY, expect=1)
    assert "VECTORGATE_UPSTREAM_ALLOWED_BASE_URLS" in refused["error"]
    monkeypatch.setenv("VECTORGATE_UPSTREAM_ALLOWED_BASE_URLS", "https://llm.internal/v1")
    made = cli(*args, "--base-url", "https://llm.internal/v1/", stdin=OPENAI_KEY)
    assert made["base_url"] == "https://llm.internal/v1"
    cli(*args, "--base-url", "https://llm.internal.evil.com/v1", stdin=OPENAI_KEY, expect=1)
    assert cli(*args, stdin=OPENAI_KEY)["base_url"] is None


KEY_FIELDS = {
    "id",
    "name",
    "key",
    "prefix",
    "scopes",
    "vector_store_ids",
    "expires_at",
    "created_at",
}


def test_a_key_by_default_has_every_scope_every_store_and_no_expiry(cli: Any) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    key = cli("api-keys", "create", "--org", org)
    assert set(key) == KEY_FIELDS
    assert key["name"] == "default"
    assert key["scopes"] == ["upload", "read", "manage"]
    assert key["vector_store_ids"] is None
    assert key["expires_at"] is None


def test_a_key_can_be_made_for_some_scopes_some_stores_and_a_lifetime(
    cli: Any, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VECTORGATE_OPENAI_BASE_URL", fake.base_url)
    org = cli("orgs", "create", "Acme")["id"]
    cred = cli("credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]
    register = ("vector-stores", "register", "--org", org, "--credential", cred)
    first = cli(*register, "--create", "one")["id"]
    second = cli(*register, "--create", "two")["id"]

    before = datetime.now(UTC)
    key = cli(
        "api-keys", "create", "--org", org, "--name", "browser",
        "--scopes", "upload, read,upload",
        "--vector-store", first, "--vector-store", second,
        "--expires-in", "3600",
    )  # fmt: skip
    after = datetime.now(UTC)

    assert set(key) == KEY_FIELDS
    assert key["scopes"] == ["upload", "read"]
    assert key["vector_store_ids"] == [first, second]
    expires_at = datetime.fromisoformat(key["expires_at"])
    assert before + timedelta(seconds=3599) <= expires_at <= after + timedelta(seconds=3601)


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (("--scopes", "upload,admin"), "Unknown scope 'admin'"),
        (("--scopes", ","), "at least one scope"),
        (("--vector-store", "vs_notregistered"), "vs_notregistered is not registered"),
        (("--expires-in", "0"), "expires_in_s must be between 1"),
        (("--expires-in", "-5"), "expires_in_s must be between 1"),
    ],
)
def test_a_key_with_an_impossible_grant_is_refused(
    cli: Any, flags: tuple[str, ...], problem: str
) -> None:
    org = cli("orgs", "create", "Acme")["id"]
    result = cli("api-keys", "create", "--org", org, *flags, expect=1)
    assert problem in result["error"]
    assert set(result) == {"error"}


def audit_trail(database_url: str) -> list[tuple[str, str, str, str, str | None]]:
    """(organization, type, target, actor type, actor id) of every audit event, oldest first."""

    async def load() -> list[tuple[str, str, str, str, str | None]]:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                events = await session.scalars(select(AuditEvent).order_by(AuditEvent.created_at))
                return [
                    (e.organization_id, e.type, e.target_id, e.actor_type, e.actor_id)
                    for e in events
                ]
        finally:
            await engine.dispose()

    return asyncio.run(load())


def audit_details(database_url: str) -> str:
    async def load() -> str:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return json.dumps([e.details for e in await session.scalars(select(AuditEvent))])
        finally:
            await engine.dispose()

    return asyncio.run(load())


def test_every_change_of_the_cli_is_audited_with_the_cli_as_actor(
    cli: Any, database_url: str, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", old)
    monkeypatch.setenv("VECTORGATE_OPENAI_BASE_URL", fake.base_url)
    org, other = cli("orgs", "create", "Acme")["id"], cli("orgs", "create", "Other")["id"]
    key = cli("api-keys", "create", "--org", org, "--scopes", "read")
    cli("api-keys", "revoke", key["prefix"])
    cred = cli("credentials", "create", "--org", org, "--name", "m", stdin=OPENAI_KEY)["id"]
    theirs = cli("credentials", "create", "--org", other, "--name", "m", stdin=OPENAI_KEY)["id"]
    register = ("vector-stores", "register", "--org", org, "--credential", cred)
    store = cli(*register, "--create", "docs")["id"]
    monkeypatch.setenv("VECTORGATE_ENCRYPTION_KEYS", f"{new},{old}")
    assert cli("credentials", "rotate")["rotated"] == 2

    trail = audit_trail(database_url)
    assert {(actor_type, actor_id) for *_, actor_type, actor_id in trail} == {("cli", None)}
    assert [event[:3] for event in trail[:7]] == [
        (org, "organization.created", org),
        (other, "organization.created", other),
        (org, "api_key.created", key["id"]),
        (org, "api_key.revoked", key["id"]),
        (org, "credential.created", cred),
        (other, "credential.created", theirs),
        (org, "vector_store.registered", store),
    ]
    # Rotation: one event per credential, each in its own organization.
    assert sorted(event[:3] for event in trail[7:]) == sorted(
        [(org, "credential.rotated", cred), (other, "credential.rotated", theirs)]
    )
    details = audit_details(database_url)
    for secret in (OPENAI_KEY, key["key"], hashlib.sha256(key["key"].encode()).hexdigest()):
        assert secret not in details
