"""The `vectorgate` command (SPEC section 6). Every command takes --json."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.errors import AppError
from vectorgate.organizations.models import ALL_SCOPES
from vectorgate.security.encryption import DecryptionError, Secret, load_keyring
from vectorgate.settings import Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    try:
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "migrate":
            result: dict[str, Any] = _migrate(settings)
        else:
            result = asyncio.run(args.handler(args, settings))
    except (AppError, DecryptionError, ValueError) as exc:
        message = exc.message if isinstance(exc, AppError) else str(exc)
        if args.json:
            print(json.dumps({"error": message}))
        else:
            print(f"error: {message}", file=sys.stderr)
        return 1
    text = result.pop("text", None)
    if args.json:
        print(json.dumps(result))
    else:
        print(text or "\n".join(f"{key}: {value}" for key, value in result.items()))
    return 0 if result.get("ok", True) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vectorgate", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="migrate, then serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    commands.add_parser("migrate", parents=[common], help="upgrade the database to head")

    orgs = commands.add_parser("orgs", help="organizations").add_subparsers(
        dest="action", required=True
    )
    create_org = orgs.add_parser("create", parents=[common], help="create an organization")
    create_org.add_argument("name")
    create_org.set_defaults(handler=_create_org)

    keys = commands.add_parser("api-keys", help="API keys").add_subparsers(
        dest="action", required=True
    )
    create_key = keys.add_parser("create", parents=[common], help="create a key (shown once)")
    create_key.add_argument("--org", required=True)
    create_key.add_argument("--name", default="default")
    create_key.add_argument(
        "--scopes",
        default=",".join(ALL_SCOPES),
        help="comma-separated, of upload, read, manage (default: all three)",
    )
    create_key.add_argument(
        "--vector-store",
        action="append",
        dest="vector_stores",
        metavar="VS_ID",
        help="a registered store the key acts on; repeatable (default: all of them)",
    )
    create_key.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="lifetime (default: never expires)"
    )
    create_key.set_defaults(handler=_create_key)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key by prefix or id")
    revoke.add_argument("key")
    revoke.set_defaults(handler=_revoke_key)

    creds = commands.add_parser("credentials", help="OpenAI keys").add_subparsers(
        dest="action", required=True
    )
    create_cred = creds.add_parser(
        "create", parents=[common], help="store an OpenAI key read from stdin"
    )
    create_cred.add_argument("--org", required=True)
    create_cred.add_argument("--name", required=True)
    create_cred.add_argument(
        "--base-url", help="an OpenAI-compatible API for this credential (SPEC 12)"
    )
    create_cred.set_defaults(handler=_create_credential)
    rotate = creds.add_parser("rotate", parents=[common], help="re-encrypt with the first key")
    rotate.set_defaults(handler=_rotate)

    stores = commands.add_parser("vector-stores", help="vector stores").add_subparsers(
        dest="action", required=True
    )
    register = stores.add_parser("register", parents=[common], help="register a vector store")
    register.add_argument("--org", required=True)
    register.add_argument("--credential", required=True)
    which = register.add_mutually_exclusive_group(required=True)
    which.add_argument("--create", metavar="NAME", help="create a new vector store upstream")
    which.add_argument("--id", metavar="VS_ID", help="register an existing vector store")
    register.set_defaults(handler=_register)

    doctor = commands.add_parser(
        "doctor", parents=[common], help="check settings, database, keys and temp dir"
    )
    doctor.add_argument("--org", help="with --credential: also reach OpenAI with it")
    doctor.add_argument("--credential")
    doctor.set_defaults(handler=_doctor)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from vectorgate.server import GuardedHttpToolsProtocol, raise_fd_limit

    _migrate(settings)
    raise_fd_limit()  # inherited by worker processes; connections are capped below it
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes: /metrics aggregates what each of them writes here.
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "vectorgate.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=_log_config(),
        timeout_graceful_shutdown=30,
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )
    return 0


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus vectorgate's loggers; our access line replaces uvicorn's."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["plain"] = {"format": "%(levelname)s %(name)s %(message)s"}
    config["handlers"]["vectorgate"] = {
        "class": "logging.StreamHandler",
        "formatter": "plain",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["vectorgate"] = {"handlers": ["vectorgate"], "level": "INFO"}
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    return config


def _migrate(settings: Settings) -> dict[str, Any]:
    from vectorgate.migrate import head_revision, upgrade_to_head

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.resolved_database_url)
    return {"revision": head_revision()}


async def _in_transaction(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run `work` in one transaction, on a database whose schema is this version's."""
    from vectorgate.migrate import current_revision, head_revision

    settings.data_dir.mkdir(parents=True, exist_ok=True)  # where the SQLite default lives
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(current_revision)
        if revision != head_revision():
            state = f"at revision {revision}" if revision else "empty"
            raise ValueError(
                f"the database is {state}, this version needs {head_revision()}: "
                "run `vectorgate migrate` (or start `vectorgate serve`, which migrates) first"
            )
        async with create_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


async def _create_org(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.audit.service import CLI
    from vectorgate.organizations.service import create_organization

    async def work(session: AsyncSession) -> dict[str, Any]:
        org = await create_organization(session, args.name, CLI)
        return {"id": org.id, "name": org.name, "text": org.id}

    return await _in_transaction(settings, work)


async def _create_key(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.audit.service import CLI
    from vectorgate.errors import not_found
    from vectorgate.organizations.service import create_api_key, get_organization, lifetime_end
    from vectorgate.schemas import iso_millis

    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]

    async def work(session: AsyncSession) -> dict[str, Any]:
        if await get_organization(session, args.org) is None:
            raise not_found(f"Organization {args.org} not found")
        issued = await create_api_key(
            session,
            args.org,
            args.name,
            CLI,
            scopes=scopes,
            vector_store_ids=args.vector_stores,
            expires_at=lifetime_end(args.expires_in),
        )
        record = issued.record
        return {
            "id": record.id,
            "name": record.name,
            "key": issued.key,
            "prefix": record.prefix,
            "scopes": record.scopes,
            "vector_store_ids": record.vector_store_ids,
            "expires_at": iso_millis(record.expires_at) if record.expires_at else None,
            "created_at": iso_millis(record.created_at),
            "text": issued.key,
        }

    return await _in_transaction(settings, work)


async def _revoke_key(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.audit.service import CLI
    from vectorgate.errors import not_found
    from vectorgate.organizations.service import revoke_api_key

    async def work(session: AsyncSession) -> dict[str, Any]:
        revoked = await revoke_api_key(session, args.key, CLI)
        if not revoked:
            raise not_found(f"No live API key matches {args.key}")
        return {"revoked": [record.id for record in revoked]}

    return await _in_transaction(settings, work)


async def _create_credential(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.audit.service import CLI
    from vectorgate.credentials.schemas import check_api_key
    from vectorgate.credentials.service import create_credential
    from vectorgate.errors import not_found
    from vectorgate.organizations.service import get_organization

    api_key = Secret(sys.stdin.readline().strip())
    if not api_key.reveal():
        raise ValueError("no OpenAI API key on standard input")
    check_api_key(api_key.reveal())
    keyring = load_keyring(settings.encryption_keys.get_secret_value(), settings.data_dir)

    async def work(session: AsyncSession) -> dict[str, Any]:
        if await get_organization(session, args.org) is None:
            raise not_found(f"Organization {args.org} not found")
        credential = await create_credential(
            session,
            keyring,
            args.org,
            args.name,
            api_key,
            CLI,
            base_url=args.base_url,
            allowed_base_urls=settings.upstream_allowed_base_urls,
        )
        return {
            "id": credential.id,
            "name": credential.name,
            "key_hint": credential.key_hint,
            "base_url": credential.base_url,
        }

    return await _in_transaction(settings, work)


async def _rotate(_args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.audit.service import CLI
    from vectorgate.credentials.service import rotate_credentials
    from vectorgate.webhooks.service import reencrypt_secrets

    keyring = load_keyring(settings.encryption_keys.get_secret_value(), settings.data_dir)

    async def work(session: AsyncSession) -> dict[str, Any]:
        rotated, undecryptable = await rotate_credentials(session, keyring, CLI)
        webhooks, undecryptable_webhooks = await reencrypt_secrets(session, keyring)
        return {
            "rotated": rotated,
            "undecryptable": undecryptable,
            "webhooks_rotated": webhooks,
            "undecryptable_webhooks": undecryptable_webhooks,
        }

    result = await _in_transaction(settings, work)
    lost = [
        f"{kind} {', '.join(ids)}"
        for kind, ids in (
            ("credentials", result["undecryptable"]),
            ("webhooks", result["undecryptable_webhooks"]),
        )
        if ids
    ]
    if lost:
        raise ValueError(
            f"rotated {result['rotated']}; no configured key decrypts {'; '.join(lost)}"
        )
    return result


async def _register(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.audit.service import CLI
    from vectorgate.upstream.client import create_base_client
    from vectorgate.vector_stores.service import register_vector_store

    keyring = load_keyring(settings.encryption_keys.get_secret_value(), settings.data_dir)
    client = create_base_client(settings)

    async def work(session: AsyncSession) -> dict[str, Any]:
        store = await register_vector_store(
            session,
            keyring,
            client,
            args.org,
            args.credential,
            CLI,
            create_name=args.create,
            vector_store_id=args.id,
        )
        return {"id": store.id, "name": store.name, "credential_id": store.credential_id}

    try:
        return await _in_transaction(settings, work)
    finally:
        await client.close()


async def _doctor(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from vectorgate.doctor import run_checks

    report = await run_checks(settings, org_id=args.org, credential_id=args.credential)
    lines = [f"{name}: {status}" for name, status in report["checks"].items()]
    return {**report, "text": "\n".join(lines)}
