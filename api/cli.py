"""`dqbart`: run the service (embedded or as separate processes), migrate, create API keys.

The client commands (models, datasets, jobs, summarize, translate) are dqbart_client's click group.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import NoReturn

from dqbart_client.cli import client_cli
from store.db import session_scope, upgrade_database
from store.settings import Settings, get_settings

DEV_TENANT = "dev"
WORKER_STOP_SECONDS = 15.0  # warm shutdown first; then the job resumes from its checkpoint later


def worker_command(*, concurrency: int = 1, pool: str = "solo", loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "--concurrency", str(concurrency),
            "-P", pool, "--loglevel", loglevel]


def _create_key(settings: Settings, tenant_name: str) -> tuple[str, str, str]:
    """(tenant id, key id, new plaintext key); the tenant is created if missing."""
    from store import tenants

    with session_scope(settings) as session:
        tenant = tenants.get_or_create_tenant(session, name=tenant_name)
        row, plaintext = tenants.create_key(session, tenant_id=tenant.id)
        return tenant.id, row.id, plaintext


def _dev_key(settings: Settings) -> str:
    """The embedded install's key, kept in DATA_DIR (readable by its owner only) across restarts."""
    from store import tenants

    path = settings.DATA_DIR / "dev-api-key"
    if path.is_file():
        key = path.read_text(encoding="utf-8").strip()
        with session_scope(settings) as session:
            if tenants.tenant_for_key(session, key=key) is not None:
                return key
    *_, key = _create_key(settings, DEV_TENANT)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return key


def _run_uvicorn(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    # No limit_concurrency: uvicorn's 503 is plain text; api/admission.py sheds in the error shape.
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=settings.LOG_LEVEL.lower())


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _exit_quietly(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    upgrade_database(settings)
    key = _dev_key(settings)
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs the
    # `finally` below, so the worker never outlives us.
    signal.signal(signal.SIGTERM, _exit_quietly)
    # The worker gets the same resolved settings, whatever its working directory.
    env = {**os.environ, "DQB_DATA_DIR": str(settings.DATA_DIR), "DQB_DATABASE_URL": settings.DATABASE_URL}
    workers = [subprocess.Popen(worker_command(loglevel=settings.LOG_LEVEL), env=env)
               for _ in range(args.workers)]
    try:
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        pids = ", ".join(str(w.pid) for w in workers)
        print(f"dqbart (embedded): data in {settings.DATA_DIR}, worker pids {pids}")
        print(f"API:  http://{shown_host}:{args.port}   (docs: http://{shown_host}:{args.port}/docs)")
        print(f"key:  {key}", flush=True)
        _run_uvicorn(settings, args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        for worker in workers:
            _stop(worker)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    _run_uvicorn(get_settings(), args.host, args.port, args.workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> NoReturn:
    command = worker_command(concurrency=args.concurrency, pool=args.pool, loglevel=get_settings().LOG_LEVEL)
    os.execv(command[0], command)  # celery becomes this process: signals reach it directly


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    upgrade_database(settings)
    print(f"database is at the latest revision ({settings.DATABASE_URL.split('@')[-1]})")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    upgrade_database(settings)
    tenant_id, key_id, key = _create_key(settings, args.tenant)
    print(f"new API key {key_id} for tenant {args.tenant} ({tenant_id}); it is shown only once")
    print(f"(revoke it with: dqbart keys revoke {key_id} --tenant {args.tenant})")
    print(key)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from store import tenants

    with session_scope(get_settings()) as session:
        tenant = tenants.get_tenant_by_name(session, name=args.tenant)
        revoked = tenant is not None and tenants.revoke_key(session, tenant_id=tenant.id, key_id=args.key_id)
    print(f"revoked {args.key_id}" if revoked else f"no active key {args.key_id} for tenant {args.tenant}")
    return 0 if revoked else 1


def build_parser() -> argparse.ArgumentParser:
    client_commands = ", ".join(client_cli.commands)
    parser = argparse.ArgumentParser(prog="dqbart", description=__doc__, epilog=(
        f"client commands: {client_commands} (dqbart COMMAND --help); they read DQB_API_URL and DQB_API_KEY"))
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="embedded: migrate, then the API and its workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes, one job at a time each (a sweep's children spread over them)")
    serve.set_defaults(run=cmd_serve)
    api = commands.add_parser("api", help="the API alone (uvicorn)")
    api.add_argument("--host", default="0.0.0.0")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.set_defaults(run=cmd_api)
    worker = commands.add_parser("worker", help="a Celery worker (one job at a time)")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--pool", default="solo", choices=["solo", "prefork"])
    worker.set_defaults(run=cmd_worker)
    migrate = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    migrate.set_defaults(run=cmd_migrate)
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="a new key (and the tenant if missing), alone on the last line")
    create.add_argument("--tenant", required=True)
    create.set_defaults(run=cmd_keys_create)
    revoke = keys.add_parser("revoke", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id")
    revoke.add_argument("--tenant", required=True)
    revoke.set_defaults(run=cmd_keys_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in client_cli.commands:
        client_cli.main(args=argv, prog_name="dqbart")  # exits with the command's status
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
