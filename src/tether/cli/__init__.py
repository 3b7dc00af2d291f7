"""The ``tether`` command: the operator's tool. It sees every tenant unless told not to."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether import errors, types
from tether.cli.options import check_options
from tether.cli.progress import ProgressPrinter
from tether.cli.spec import build_runtime
from tether.context.view import context_view
from tether.runtime import Runtime, TaskResult, default_store_url
from tether.store import open_store
from tether.store.base import Store
from tether.store.migrations import redact
from tether.store.presence import require_store

app = typer.Typer(
    name="tether",
    help="Reliable AI agents: journaled steps, leases, explicit context, task-level retries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="Inspect tasks.", no_args_is_help=True)
sessions_app = typer.Typer(help="Inspect sessions.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(sessions_app, name="sessions")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default: $TETHER_STORE, else sqlite:///tether.db)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3


def _fail(exc: errors.TetherError) -> typer.Exit:
    err.print(
        f"[red]error[/] {escape(f'[{exc.where}/{exc.error_class}] {exc.message}')}", highlight=False
    )
    return typer.Exit(EXIT_USAGE if exc.where == "input" else EXIT_FAILED)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _finish(result: TaskResult, as_json: bool) -> None:
    if as_json:
        _print_json(result.task.to_public())
    elif result.status == "completed":
        output = result.output
        out.print(
            output if isinstance(output, str) else json.dumps(output, indent=2), highlight=False
        )
    if result.status == "completed":
        raise typer.Exit(0)
    error = result.error or {}
    detail = f": [{error.get('type')}/{error.get('error_class')}] {error.get('message')}"
    err.print(
        f"[red]task {result.id} {result.status}[/]{escape(detail) if error else ''}",
        highlight=False,
    )
    raise typer.Exit(EXIT_CANCELLED if result.status == "cancelled" else EXIT_FAILED)


@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="path/to/file.py:name or module:name")],
    prompt: Annotated[str, typer.Argument(help="The task's input.")],
    session: Annotated[str | None, typer.Option(help="Continue this session.")] = None,
    tenant: Annotated[str, typer.Option(help="The tenant that owns the session.")] = "default",
    agent: Annotated[str | None, typer.Option(help="Which agent, when SPEC holds several.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a task and run it to the end in this process, showing each step."""
    try:
        runtime = build_runtime([spec], store)
        name = _pick_agent(runtime, agent)
        with runtime:
            runtime.observers.add(ProgressPrinter(err))
            task = runtime.submit(name, prompt, tenant=tenant, session=session)
            err.print(f"task {task.id}", highlight=False)
            result = runtime.run(task.id)
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    _finish(result, as_json)


@app.command()
def submit(
    spec: Annotated[str, typer.Argument(help="path/to/file.py:name or module:name")],
    prompt: Annotated[str, typer.Argument(help="The task's input.")],
    session: Annotated[str | None, typer.Option(help="Continue this session.")] = None,
    tenant: Annotated[str, typer.Option(help="The tenant that owns the session.")] = "default",
    agent: Annotated[str | None, typer.Option(help="Which agent, when SPEC holds several.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submit at most once per key.")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue a task for the workers; print its id and return."""
    try:
        runtime = build_runtime([spec], store)
        name = _pick_agent(runtime, agent)
        with runtime:
            task = runtime.submit(
                name, prompt, tenant=tenant, session=session, idempotency_key=idempotency_key
            )
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json(task.to_public())
    else:
        out.print(task.id, highlight=False)


@app.command()
def resume(
    task_id: Annotated[str, typer.Argument(help="The task to continue.")],
    spec: Annotated[
        str | None, typer.Argument(help="Defaults to the spec it was submitted with.")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a task from its journal: completed steps replay, the rest run."""
    try:
        if spec is None:
            with Runtime(store) as probe:
                task = probe.get_task(task_id)
            if not task.spec:
                raise errors.InvalidInput(
                    f"task {task_id} was not submitted from a spec; pass the SPEC that defines "
                    f"agent {task.agent!r}"
                )
            spec = task.spec
        runtime = build_runtime([spec], store)
        with runtime:
            runtime.observers.add(ProgressPrinter(err))
            err.print(f"task {task_id}", highlight=False)
            result = runtime.run(task_id)
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    _finish(result, as_json)


def _pick_agent(runtime: Runtime, agent: str | None) -> str:
    names = sorted(runtime.workflows)
    if agent is not None:
        if agent not in runtime.workflows:
            raise errors.UnknownAgent(f"no agent {agent!r} in the spec; it has {names}")
        return agent
    if len(names) != 1:
        raise errors.InvalidInput(f"the spec holds several agents {names}; choose one with --agent")
    return names[0]


# ---- inspection ------------------------------------------------------------


def _check_limit(limit: int) -> None:
    try:
        check_options(limit=limit)
    except errors.TetherError as exc:
        raise _fail(exc) from exc


def _require_store(store: str | None, *, allow_empty: bool = False) -> None:
    """End a command that only reads (or changes existing rows) when there is no store:
    it never creates one, nor adds tables to another application's file."""
    try:
        asyncio.run(require_store(store or default_store_url(), allow_empty=allow_empty))
    except errors.TetherError as exc:
        raise _fail(exc) from exc


def _call_store_at(store: str | None, fn: Any, *, existing: bool = True) -> Any:
    """One read or write on the store; a tether error ends the command with its message.
    ``existing``: the store must exist already (see ``_require_store``)."""
    if existing:
        _require_store(store)
    try:
        with Runtime(store) as runtime:
            return runtime.run_on_store(fn)
    except errors.TetherError as exc:
        raise _fail(exc) from exc


@tasks_app.command("list")
def tasks_list(
    tenant: TenantOpt = None,
    status: Annotated[str | None, typer.Option(help="Only tasks in this status.")] = None,
    session: Annotated[str | None, typer.Option(help="Only tasks of this session.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List tasks, newest first."""
    if status is not None and status not in types.TASK_STATUSES:
        err.print(
            f"[red]error[/] unknown status {status!r}; use one of {list(types.TASK_STATUSES)}"
        )
        raise typer.Exit(EXIT_USAGE)
    _check_limit(limit)
    tasks: list[types.TaskRecord] = _call_store_at(
        store,
        lambda s: s.list_tasks(tenant=tenant, status=status, session_id=session, limit=limit),
    )
    if as_json:
        _print_json([t.to_public() for t in tasks])
        return
    table = Table("id", "tenant", "session", "agent", "status", "runs", "updated")
    for t in tasks:
        table.add_row(
            t.id, t.tenant, t.session_id, t.agent, t.status, str(t.runs), _ago(t.updated_at)
        )
    out.print(table)


async def _task_details(s: Store, task_id: str, tenant: str | None) -> dict[str, Any]:
    task = await s.get_task(task_id, tenant=tenant)
    journal = await s.load_journal(task_id)
    runs = await s.list_runs(task_id)
    attempts = await s.list_attempts(task_id)
    data = task.to_public()
    data["steps"] = [r.to_public() for r in journal]
    data["run_history"] = [
        {
            "run": r.run,
            "worker": r.worker,
            "started_at": r.started_at,
            "from_step": r.from_step,
            "reason": r.reason,
        }
        for r in runs
    ]
    data["recoveries"] = [r for r in data["run_history"] if r["reason"] not in ("start", "wake")]
    data["signals"] = [g.to_public() for g in await s.list_signals(task_id)]
    data["attempts"] = [
        {
            "step": a.index,
            "attempt": a.attempt,
            "error": {k: a.error.get(k) for k in ("type", "error_class", "retryable", "message")},
            "delay": a.delay,
            "worker": a.worker,
            "at": a.at,
        }
        for a in attempts
    ]
    return data


@tasks_app.command("show")
def tasks_show(
    task_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One task: status, output, error, its steps, runs, recoveries and failed attempts."""
    data = _call_store_at(store, lambda s: _task_details(s, task_id, tenant))
    if as_json:
        _print_json(data)
        return
    out.print(
        f"[bold]task {data['id']}[/]  {data['status']}  agent={data['agent']}  "
        f"tenant={data['tenant']}  session={data['session_id']}",
        highlight=False,
    )
    if data["error"]:
        e = data["error"]
        out.print(f"[red]error[/] [{e['type']}/{e['error_class']}] {e['message']}", highlight=False)
    if data["output"] is not None:
        out.print(f"output: {data['output']}", highlight=False)
    table = Table("step", "kind", "name", "status", "attempts", "worker")
    for st in data["steps"]:
        table.add_row(
            str(st["index"]),
            st["kind"],
            st["name"],
            st["status"],
            str(st["attempts"]),
            st["worker"] or "",
        )
    out.print(table)
    runs = Table("run", "reason", "worker", "from step", "when")
    for r in data["run_history"]:
        runs.add_row(
            str(r["run"]), r["reason"], r["worker"], str(r["from_step"]), _ago(r["started_at"])
        )
    out.print(runs)
    if data["attempts"]:
        attempts = Table("step", "attempt", "error", "delay")
        for a in data["attempts"]:
            attempts.add_row(
                str(a["step"]),
                str(a["attempt"]),
                f"{a['error']['error_class']}: {a['error']['message']}",
                f"{a['delay']:.2f}s",
            )
        out.print(attempts)


async def _events_after(
    task_id: str, tenant: str | None, after: int, s: Store
) -> list[types.EventRecord]:
    return await s.list_events(task_id, tenant=tenant, after_seq=after)


@tasks_app.command("events")
def tasks_events(
    task_id: Annotated[str, typer.Argument()],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the task ends.")
    ] = False,
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The task's events in order (``--follow`` waits for new ones)."""
    _require_store(store)
    try:
        with Runtime(store) as runtime:
            after = 0
            while True:
                batch = runtime.run_on_store(
                    functools.partial(_events_after, task_id, tenant, after)
                )
                for ev in batch:
                    after = ev.seq
                    if as_json:
                        sys.stdout.write(json.dumps(ev.to_public(), default=str) + "\n")
                    else:
                        step = f" step {ev.step}" if ev.step is not None else ""
                        out.print(
                            f"{ev.seq:>5} {_clock(ev.at)} {ev.name}{step} {ev.data}",
                            highlight=False,
                        )
                sys.stdout.flush()
                if not follow:
                    return
                task = runtime.get_task(task_id, tenant=tenant)
                if task.status in types.FINAL_STATUSES and not batch:
                    return
                time.sleep(0.25)
    except errors.TetherError as exc:
        raise _fail(exc) from exc


@tasks_app.command("cancel")
def tasks_cancel(
    task_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a task: queued ones at once, running ones at their next step boundary."""
    task = _call_store_at(store, lambda s: s.request_cancel(task_id, tenant=tenant))
    if as_json:
        _print_json(task.to_public())
    else:
        out.print(
            f"task {task.id}: {task.status}{' (cancel requested)' if task.cancel_requested else ''}"
        )


async def _session_details(s: Store, session_id: str, tenant: str | None) -> dict[str, Any]:
    session = await s.get_session(session_id, tenant=tenant)
    messages = await s.list_messages(session_id, tenant=tenant)
    tasks = await s.list_tasks(tenant=tenant, session_id=session_id, limit=1000)
    data = session.to_public()
    data["context"] = context_view(session.state)
    data["messages"] = [
        {"seq": m.seq, "task_id": m.task_id, **m.message.to_dict()} for m in messages
    ]
    data["tasks"] = [t.to_public() for t in reversed(tasks)]
    return data


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A session: its messages in order, its tasks and its context bookkeeping."""
    data = _call_store_at(store, lambda s: _session_details(s, session_id, tenant))
    if as_json:
        _print_json(data)
        return
    out.print(
        f"[bold]session {data['id']}[/] tenant={data['tenant']} agent={data['agent']}",
        highlight=False,
    )
    ctx = data["context"] or {}
    if ctx:
        used = ctx["tokens"] if ctx["tokens"] is not None else ctx["estimated_tokens"]
        share = f"{ctx['utilisation']:.0%}" if ctx["utilisation"] is not None else "?"
        out.print(
            f"context: {used} of {ctx['limit']} prompt tokens ({share} of the budget; window "
            f"{ctx['window']}), estimated {ctx['estimated_tokens']} by {ctx['counter']}",
            highlight=False,
        )
        summary = ctx["summary"]
        if summary:
            out.print(
                f"summary of messages 1–{ctx['folded_upto']} ({summary['messages']} messages, "
                f"generation {summary['generation']}): {summary['text'][:400]}",
                highlight=False,
            )
        if ctx["memory_messages"]:
            out.print(f"memory: {ctx['memory_messages']} messages", highlight=False)
        out.print(f"compactions: {ctx['compactions_total']}", highlight=False)
        for c in ctx["compactions"]:
            span = f"messages {c['from']}–{c['to']}" if c.get("from") else "the summary"
            out.print(
                f"  {c['strategy']:<11} {span}: {c['tokens_before']} → {c['tokens_after']} "
                f"tokens (task {c['task_id']})",
                highlight=False,
            )
    for m in data["messages"]:
        body = m.get("content") or ""
        if m.get("tool_calls"):
            body += " " + ", ".join(f"{c['name']}({c['arguments']})" for c in m["tool_calls"])
        out.print(f"{m['seq']:>4} [bold]{m['role']:<9}[/] {body[:300]}", highlight=False)


@sessions_app.command("list")
def sessions_list(
    tenant: TenantOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List sessions, newest first."""
    _check_limit(limit)
    sessions: list[types.SessionRecord] = _call_store_at(
        store, lambda s: s.list_sessions(tenant=tenant, limit=limit)
    )
    if as_json:
        _print_json([s.to_public() for s in sessions])
        return
    table = Table("id", "tenant", "agent", "messages", "updated")
    for s in sessions:
        table.add_row(s.id, s.tenant, s.agent, str(s.last_seq), _ago(s.updated_at))
    out.print(table)


@app.command()
def migrate(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be applied.")] = False,
    store: StoreOpt = None,
) -> None:
    """Upgrade the store's schema in place (each migration in its own transaction)."""
    url = store or default_store_url()
    if dry_run:
        _require_store(url, allow_empty=True)

    async def go() -> tuple[list[str], int]:
        s = open_store(url, migrate=False)
        await s.open(check=False)
        try:
            return await s.migrate(dry_run=dry_run), await s.schema_version()
        finally:
            await s.close()

    try:
        applied, version = asyncio.run(go())
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    verb = "would apply" if dry_run else "applied"
    for name in applied:
        out.print(f"{verb} {name}")
    out.print(
        f"store {redact(url)} at schema version {version}"
        + (" (nothing to do)" if not applied else "")
    )


@app.command()
def demo(
    store: StoreOpt = None,
    keep: Annotated[bool, typer.Option(help="Keep the temporary folder for inspection.")] = False,
) -> None:
    """Offline demo: a multi-step agent is killed with SIGKILL mid-task and resumed."""
    from tether.demo.show import run_demo

    raise typer.Exit(run_demo(store=store, keep=keep, console=out))


def _ago(ts: float) -> str:
    delta = max(0.0, time.time() - ts)
    if delta < 120:
        return f"{delta:.0f}s ago"
    if delta < 7200:
        return f"{delta / 60:.0f}m ago"
    return f"{delta / 3600:.1f}h ago"


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def main() -> None:
    from tether.cli import backup as _backup  # noqa: F401  (registers `tether backup`)
    from tether.cli import doctor as _doctor  # noqa: F401  (registers `tether doctor`)
    from tether.cli import serve as _serve  # noqa: F401  (registers `tether serve`, `keys`)
    from tether.cli import signals as _signals  # noqa: F401  (`tether signal`, `approve`, `deny`)
    from tether.cli import worker as _worker  # noqa: F401  (registers `tether worker`)

    for i, arg in enumerate(sys.argv[1:], start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            err.print(
                f"[red]error[/] argument {i} ({escape(shown)}) is not valid UTF-8: "
                "pass text encoded as UTF-8",
                highlight=False,
            )
            raise SystemExit(EXIT_USAGE) from None
    app()
