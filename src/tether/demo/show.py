"""``tether demo``: run a task in a child process, SIGKILL it mid-step, resume it here.

What it proves, from the store and the tools' own ledger rather than from logs:
completed steps replay from the journal, only the step in flight runs again (with
the same idempotency key), the answer is complete, and every side effect happened
exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.table import Table

from tether import redact
from tether.cli.progress import ProgressPrinter
from tether.demo.agent import librarian
from tether.runtime import Runtime

SPEC = "tether.demo.agent:librarian"
WORKER_ID = "demo-host:worker"
KILL_AT_READ = 3


def run_demo(*, store: str | None, keep: bool, console: Console) -> int:
    folder = Path(tempfile.mkdtemp(prefix="tether-demo-"))
    os.environ["TETHER_DEMO_DIR"] = str(folder)
    url = store or f"sqlite:///{folder / 'demo.db'}"
    try:
        return _run(folder, url, console)
    finally:
        if keep:
            console.print(f"[dim]kept {folder}[/]")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _run(folder: Path, url: str, console: Console) -> int:
    console.rule("[bold]tether demo[/]: a worker is killed mid-task and the task resumes")
    with Runtime(url, worker_id=WORKER_ID) as runtime:
        runtime.register(librarian, spec=SPEC)
        task = runtime.submit("librarian", "Summarise the library.", tenant="demo")
    console.print(
        f"store {redact.url(url)}\nsubmitted task {task.id} (agent librarian, tenant demo)\n"
    )

    console.print(
        f"[bold]1.[/] a child process runs the task; it is killed with SIGKILL while "
        f"tool call #{KILL_AT_READ} to read_document is finishing"
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "tether", "resume", task.id, SPEC, "--store", url],
        env={**os.environ, "TETHER_WORKER_ID": WORKER_ID, "TETHER_DEMO_DIR": str(folder)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    reader = threading.Thread(target=_echo, args=(child.stderr, console), daemon=True)
    reader.start()
    killed_key = _wait_for_effect(folder, KILL_AT_READ, child, timeout=60)
    if killed_key is None:
        console.print("[red]the child ended before the kill point; the demo could not run[/]")
        child.kill()
        return 1
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join(timeout=2)
    console.print(
        f"  [red]killed[/] pid {child.pid} (exit {child.returncode}) during step "
        f"{killed_key.split(':')[1]} — its effect was written, its step not yet committed\n"
    )

    with Runtime(url, worker_id=WORKER_ID) as runtime:
        journal = runtime.run_on_store(lambda s: s.load_journal(task.id))
        console.print(f"[bold]2.[/] the journal holds {len(journal)} committed steps:")
        table = Table("step", "kind", "name", "status")
        for r in journal:
            table.add_row(str(r.index), r.kind, r.name, r.status)
        console.print(table)

        console.print(
            "[bold]3.[/] resume in this process (same worker id: it takes its lease back "
            "at once, no waiting for expiry)"
        )
        printer = ProgressPrinter(console)
        runtime.register(librarian, spec=SPEC)
        runtime.observers.add(printer)
        result = runtime.run(task.id)
        runs = runtime.run_on_store(lambda s: s.list_runs(task.id))

    activity = [json.loads(line) for line in (folder / "activity.jsonl").read_text().splitlines()]
    ledger = [json.loads(line) for line in (folder / "effects.jsonl").read_text().splitlines()]
    starts = Counter(a["key"] for a in activity if a["kind"] == "start")
    rerun = [key for key, n in starts.items() if n > 1]
    per_key = Counter(e["key"] for e in ledger)
    once = all(n == 1 for n in per_key.values())

    console.print()
    console.rule("[bold]what happened[/]")
    console.print(
        "runs of the task: "
        + ", ".join(f"#{r.run} {r.reason} by {r.worker} from step {r.from_step}" for r in runs)
    )
    console.print(f"steps replayed from the journal: [cyan]{printer.replayed}[/] (not run again)")
    for key in rerun:
        skipped = [a for a in activity if a["key"] == key and a["kind"] == "effect"]
        console.print(
            f"step that ran again: [yellow]{key.split(':')[1]}[/] "
            f"with idempotency key [bold]{key}[/] "
            f"— the same key both times; its effect was "
            + (
                "already in the ledger, so it was skipped"
                if skipped and not skipped[-1]["appended"]
                else "written by the re-run"
            )
        )
    console.print(f"final status: [bold]{result.status}[/]")
    console.print(f"final answer: {result.output}")
    console.print(
        f"side effects in the ledger: {len(ledger)} for {len(per_key)} idempotency keys — "
        + ("[green]each happened exactly once[/]" if once else "[red]some happened twice[/]")
    )
    ok = (
        result.status == "completed"
        and once
        and len(rerun) == 1
        and printer.replayed == len(journal)
    )
    console.print("[green]demo passed[/]" if ok else "[red]demo failed[/]")
    return 0 if ok else 1


def _wait_for_effect(
    folder: Path, nth: int, child: subprocess.Popen[str], timeout: float
) -> str | None:
    """The idempotency key of the nth read whose effect is written, once it is."""
    deadline = time.monotonic() + timeout
    path = folder / "activity.jsonl"
    while time.monotonic() < deadline and child.poll() is None:
        if path.exists():
            effects = [
                json.loads(line) for line in path.read_text().splitlines() if '"effect"' in line
            ]
            reads = [e for e in effects if e["tool"] == "read_document"]
            if len(reads) >= nth:
                key: str = reads[nth - 1]["key"]
                return key
        time.sleep(0.02)
    return None


def _echo(stream: IO[str], console: Console) -> None:
    for line in stream:
        console.print(f"  [dim]child │[/] {line.rstrip()}", highlight=False)
