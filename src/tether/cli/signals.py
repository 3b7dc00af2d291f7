"""``tether signal``, ``approve``, ``deny``: messages to waiting tasks, from the operator."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tether.cli import (
    EXIT_USAGE,
    JsonOpt,
    StoreOpt,
    TenantOpt,
    _call_store_at,
    _print_json,
    app,
    err,
)
from tether.execution import signals
from tether.store.base import Signal


def _report(sent: Signal, as_json: bool) -> None:
    if as_json:
        _print_json({**sent.to_public(), "woke": sent.woke})
        return
    woke = "; the task was waiting for it and is due now" if sent.woke else ""
    typer.echo(f"signal {sent.name!r} #{sent.seq} sent to task {sent.task_id}{woke}")


@app.command("signal")
def signal_cmd(
    task_id: Annotated[str, typer.Argument(help="The task to signal.")],
    name: Annotated[str, typer.Argument(help="The signal's name (what the task waits for).")],
    data: Annotated[
        str | None, typer.Option("--data", help="JSON value the wait returns (default null).")
    ] = None,
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a signal: the task's wait_for_signal(NAME) returns DATA, now or when it gets there."""
    value: Any = None
    if data is not None:
        try:
            value = json.loads(data)
        except json.JSONDecodeError as exc:
            err.print(f"[red]error[/] --data is not JSON: {exc.msg} at position {exc.pos}")
            raise typer.Exit(EXIT_USAGE) from exc
    sent: Signal = _call_store_at(
        store, lambda s: signals.send(s, task_id, name, value, tenant=tenant)
    )
    _report(sent, as_json)


@app.command()
def approve(
    task_id: Annotated[str, typer.Argument(help="The task waiting for a tool approval.")],
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve the tool call the task waits on; the tool then runs."""
    sent: Signal = _call_store_at(
        store, lambda s: signals.decide(s, task_id, approved=True, tenant=tenant)
    )
    _report(sent, as_json)


@app.command()
def deny(
    task_id: Annotated[str, typer.Argument(help="The task waiting for a tool approval.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; the model reads it.")],
    tenant: TenantOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deny the tool call the task waits on; the model is told the tool did not run, and why."""
    if not reason.strip():
        raise _fail_usage("--reason must say why the call is denied")
    sent: Signal = _call_store_at(
        store,
        lambda s: signals.decide(s, task_id, approved=False, reason=reason, tenant=tenant),
    )
    _report(sent, as_json)


def _fail_usage(message: str) -> typer.Exit:
    err.print(f"[red]error[/] [input/InvalidInput] {message}")
    return typer.Exit(EXIT_USAGE)
