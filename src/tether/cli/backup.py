"""``tether backup DEST``: a copy of the store that holds every committed transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tether import errors
from tether.cli import EXIT_USAGE, JsonOpt, StoreOpt, _fail, _print_json, app, err, out
from tether.runtime import default_store_url
from tether.store import backup as backups


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="A new file to write the backup to.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back the store up while workers run. SQLite: an online-backup snapshot of everything
    committed (a plain copy of the .db file misses what is still in its -wal). PostgreSQL:
    prints how to use pg_dump and exits 2."""
    url = store or default_store_url()
    if not url.startswith("sqlite://"):
        err.print(f"[red]error[/] {backups.guidance(url)}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    try:
        report = backups.backup_sqlite(url, dest)
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json(
            {
                "dest": str(report.dest),
                "bytes": report.bytes,
                "tasks": report.tasks,
                "schema_version": report.schema_version,
            }
        )
        return
    out.print(
        f"backed up {url} to {report.dest}: {report.bytes} bytes, {report.tasks} tasks, "
        f"schema version {report.schema_version}; restore by stopping the workers and putting "
        "it in place of the store file",
        highlight=False,
    )
