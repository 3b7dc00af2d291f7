"""The `tether` command as an unlucky operator uses it: typos, another application's
file, a corrupt row, a backup taken while work is committed, options that cannot work.
Each case ends with one clear line (exit 2 for usage errors), never a traceback, and
nothing is created or changed that the operator did not ask for.

The CLI runs in-process (typer's runner: the real app, real stores) to stay fast; the
one case about the process's own arguments runs as a subprocess.
"""

from __future__ import annotations

import logging
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

import pg
from store_view import call_with_store
from tether import types
from tether.cli import app
from tether.cli import backup as _backup  # noqa: F401  (registers the commands)
from tether.cli import doctor as _doctor  # noqa: F401
from tether.cli import serve as _serve  # noqa: F401
from tether.cli import worker as _worker  # noqa: F401
from tether.store.base import Store

AGENTS = Path(__file__).with_name("cli_agents.py")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """`worker` and `serve` install a log handler on the runner's stream: take it off."""
    before = list(logging.getLogger().handlers)
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_clear_line(result: Result, *, code: int = 2, says: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert says in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


# ---- read-only commands never create or migrate a store ------------------------------


def test_read_only_commands_never_create_a_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'typo' / 'dir' / 't.db'}"
    for args in (
        ["tasks", "list"],
        ["tasks", "show", "x"],
        ["tasks", "events", "x"],
        ["sessions", "list"],
        ["sessions", "show", "x"],
        ["keys", "list"],
        ["migrate", "--dry-run"],
        ["doctor"],
        ["backup", str(tmp_path / "b.db")],
    ):
        one_clear_line(cli(*args, "--store", store), says="no SQLite store at")
    assert not (tmp_path / "typo").exists()


def test_another_applications_file_gets_no_tether_tables(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    before = path.read_bytes()
    store = f"sqlite:///{path}"
    for args in (["sessions", "list"], ["tasks", "list"], ["keys", "list"], ["migrate"]):
        one_clear_line(cli(*args, "--store", store), says="is not a tether store")
    assert path.read_bytes() == before  # not even switched to WAL

    empty = tmp_path / "empty.db"
    empty.touch()
    one_clear_line(cli("tasks", "list", "--store", f"sqlite:///{empty}"), says="no tether tables")
    migrated = cli("migrate", "--store", f"sqlite:///{empty}")  # told to: it creates
    assert migrated.exit_code == 0, migrated.stderr
    assert cli("tasks", "list", "--store", f"sqlite:///{empty}").exit_code == 0


def test_read_only_commands_leave_an_empty_postgres_database_empty() -> None:
    url = pg.empty_url()
    try:
        for args in (["tasks", "list"], ["sessions", "list"], ["keys", "list"]):
            one_clear_line(cli(*args, "--store", url), says="no tether store at")
        dry = cli("migrate", "--dry-run", "--store", url)
        assert dry.exit_code == 0 and "would apply" in dry.stdout
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchone()
        assert tables == (0,)
    finally:
        pg.drop_url(url)


# ---- a corrupt journal row -------------------------------------------------------------


def _task_with_steps(url: str) -> types.TaskRecord:
    run = cli("run", f"{AGENTS}:echo", "hi", "--store", url)
    assert run.exit_code == 0, run.stderr
    tasks = call_with_store(url, lambda s: s.list_tasks(limit=1))
    return tasks[0]


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_corrupt_journal_row_is_named_by_doctor_and_tasks_show(
    engine: str, tmp_path: Path
) -> None:
    url = pg.fresh_url() if engine == "postgres" else f"sqlite:///{tmp_path / 'c.db'}"
    try:
        task = _task_with_steps(url)
        assert cli("doctor", "--store", url).exit_code == 0
        corrupt = "UPDATE steps SET output = '{not json' WHERE task_id = '%s' AND idx = 1"
        if engine == "postgres":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute((corrupt % task.id).encode())
        else:
            with sqlite3.connect(tmp_path / "c.db") as conn:
                conn.execute(corrupt % task.id)
        doctor = cli("doctor", "--store", url)
        assert doctor.exit_code == 1
        assert "invalid_json_steps" in doctor.stdout
        assert f"task {task.id} step 1 (output)" in doctor.stdout
        shown = cli("tasks", "show", task.id, "--store", url)
        one_clear_line(shown, code=1, says=f"(task_id {task.id}, idx 1)")
    finally:
        if engine == "postgres":
            pg.drop_url(url)


# ---- backups ---------------------------------------------------------------------------


def test_backup_holds_what_a_file_copy_loses(tmp_path: Path) -> None:
    """While another process holds the store open, the last commits sit in the -wal
    file: a copy of the .db misses them, `tether backup` does not, and doctor says so."""
    path = tmp_path / "live.db"
    url = f"sqlite:///{path}"
    assert cli("migrate", "--store", url).exit_code == 0
    holder = sqlite3.connect(path)  # a worker's connection: the log stays until it closes
    try:
        holder.execute("SELECT count(*) FROM tasks").fetchone()

        async def submit(s: Store) -> None:
            for _ in range(40):
                await s.submit_task(types.NewTask(tenant="acme", agent="echo", input="x"))

        call_with_store(url, submit)
        shutil.copyfile(path, tmp_path / "copy.db")
        backed = cli("backup", str(tmp_path / "backup.db"), "--store", url)
        assert backed.exit_code == 0, backed.stderr
        assert "40 tasks" in backed.stdout
        doctor = cli("doctor", "--store", url, "--json")
        assert "wal_pending" in doctor.stdout
    finally:
        holder.close()
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        copied = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    assert copied < 40  # what the documented copy used to keep
    backed_up = call_with_store(f"sqlite:///{tmp_path / 'backup.db'}", lambda s: s.list_tasks())
    assert len(backed_up) == 40
    assert cli("doctor", "--store", f"sqlite:///{tmp_path / 'backup.db'}").exit_code == 0
    again = cli("backup", str(tmp_path / "backup.db"), "--store", url)
    one_clear_line(again, says="exists already")


def test_backup_of_postgres_says_how() -> None:
    result = cli("backup", "/tmp/x.dump", "--store", "postgresql://u:S3cretPW9@db.internal/prod")
    one_clear_line(result, says="pg_dump")
    assert "S3cretPW9" not in result.stderr


# ---- options that cannot work ----------------------------------------------------------


def test_bad_options_get_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    assert cli("migrate", "--store", url).exit_code == 0
    spec = f"{AGENTS}:echo"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        cases = [
            (["run", "", "hi"], "names no file or module"),
            (["run", ":", "hi"], "names no file or module"),
            (["tasks", "list", "--store", "postgresql://[::1"], "cannot be parsed"),
            (["tasks", "list", "--store", f"{pg.ADMIN_URL}?pool_timeout=-1"], "pool_timeout"),
            (["worker", spec, "--concurrency", "0", "--store", url], "--concurrency"),
            (["worker", spec, "--lease-ttl", "0", "--store", url], "lease ttl"),
            (["worker", spec, "--heartbeat", "5", "--store", url], "half the lease ttl"),
            (["worker", spec, "--metrics-port", "99999", "--store", url], "--metrics-port"),
            (["worker", spec, "--metrics-port", busy, "--store", url], "cannot serve metrics"),
            (["serve", spec, "--port", busy, "--store", url], "cannot listen"),
            (["serve", spec, "--port", "99999", "--store", url], "--port"),
            (["serve", spec, "--lease-ttl", "0", "--store", url], "lease ttl"),
        ]
        for limit in ("-5", "0", "99999999999999999999"):
            for command in (["tasks", "list"], ["sessions", "list"]):
                for store in (url, pg.ADMIN_URL):
                    cases.append(([*command, "--limit", limit, "--store", store], "--limit"))
        for args, says in cases:
            one_clear_line(cli(*args), says=says)


def test_postgres_refusals_are_reported_at_once_as_what_they_are() -> None:
    """A missing database or role, or a bad sslmode: no "unavailable, retrying" wait."""
    base = pg.ADMIN_URL.rsplit("/", 1)[0]
    for url, says in (
        (f"{base}/no_such_database_h14", 'database "no_such_database_h14" does not exist'),
        (base.replace("postgres@", "no_such_role_h14@") + "/test", "no_such_role_h14"),
        (f"{pg.ADMIN_URL}?sslmode=bogus", "sslmode"),
    ):
        one_clear_line(cli("tasks", "list", "--store", url), says=says)


def test_an_argument_that_is_not_utf8_is_refused() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tether",
            "run",
            f"{AGENTS}:echo",
            b"\xff\xfe".decode(errors="surrogateescape"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "not valid UTF-8" in done.stderr and "Traceback" not in done.stderr
