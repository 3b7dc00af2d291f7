"""``tether doctor``: check a store's schema, payloads and integrity without changing it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from tether import errors
from tether.cli import JsonOpt, StoreOpt, _fail, _print_json, app, out
from tether.runtime import default_store_url
from tether.store import migrations, open_store
from tether.store.backup import wal_findings
from tether.store.base import Finding
from tether.store.sqlite_connection import parse_url

EXIT_PROBLEMS = 1


async def _examine(url: str) -> tuple[int, list[Finding]]:
    store = open_store(url, migrate=False)
    await store.open(check=False)
    try:
        return await store.schema_version(), await store.doctor()
    finally:
        await store.close()


def _code_version(url: str) -> int:
    engine = "sqlite" if url.startswith("sqlite://") else "postgres"
    return len(migrations.load(engine))


@app.command()
def doctor(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Check a store: schema version, pending migrations, unreadable payloads, orphaned rows,
    sessions whose last_seq disagrees with their messages, running tasks with expired
    leases. Changes nothing; exits 1 when it finds a problem."""
    url = store or default_store_url()
    try:
        leftover: list[Finding] = []
        if url.startswith("sqlite://"):
            if not Path(parse_url(url)[0]).exists():
                raise errors.NotFound(f"no SQLite store at {url}: check --store or $TETHER_STORE")
            leftover = wal_findings(url)  # before opening: closing folds the log in
        version, findings = asyncio.run(_examine(url))
        findings = leftover + findings
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    shown = migrations.redact(url)
    report: dict[str, Any] = {
        "store": shown,
        "schema_version": version,
        "code_schema_version": _code_version(url),
        "ok": not findings,
        "findings": [f.to_dict() for f in findings],
    }
    if as_json:
        _print_json(report)
    else:
        out.print(
            f"store {escape(shown)}: schema version {version} "
            f"(this tether: {report['code_schema_version']})",
            highlight=False,
        )
        for f in findings:
            colour = "red" if f.severity == "error" else "yellow"
            out.print(f"[{colour}]{f.severity}[/] {f.check}: {escape(f.message)}", highlight=False)
        if not findings:
            out.print("[green]ok[/] no problems found", highlight=False)
    raise typer.Exit(EXIT_PROBLEMS if findings else 0)
