"""Delivering signals to tasks: the one door the CLI, the HTTP API and ``Runtime`` use.

A signal is stored by ``Store.send_signal`` (kept until a wait consumes it; a task
waiting for it is due at once). An approval is a signal too, sent to the name the
task is waiting on (``approval.<step>``), so an answer can only reach the tool call
that asked for it: ``decide`` refuses a task that is not waiting for an approval.
"""

from __future__ import annotations

from typing import Any

from tether import errors
from tether.store.base import Signal, Store

APPROVAL_PREFIX = "approval."
"""Signal names of tool approvals: ``approval.<step index of the wait>``."""


def metric_name(name: str) -> str:
    """The ``name`` label of ``signals_received_total``: approvals count as ``approval``,
    so the label set stays bounded however many steps ask."""
    return "approval" if name.startswith(APPROVAL_PREFIX) else name


async def send(
    store: Store, task_id: str, name: str, data: Any = None, *, tenant: str | None = None
) -> Signal:
    """Store signal ``name`` for the task (see ``Store.send_signal`` for refusals)."""
    return await store.send_signal(task_id, name, data, tenant=tenant)


async def decide(
    store: Store,
    task_id: str,
    *,
    approved: bool,
    reason: str | None = None,
    tenant: str | None = None,
) -> Signal:
    """Answer the tool approval the task is waiting for. ``Conflict`` when it waits for
    none (it is running, queued, finished, or waits for something else)."""
    task = await store.get_task(task_id, tenant=tenant)
    wait = task.wait or {}
    name = wait.get("name")
    if (
        task.status != "waiting"
        or wait.get("kind") != "signal"
        or not isinstance(name, str)
        or not name.startswith(APPROVAL_PREFIX)
    ):
        what = "for something else" if task.status == "waiting" else f"but {task.status}"
        raise errors.Conflict(
            f"task {task_id} is not waiting for a tool approval ({what}); approve or deny "
            "when its `tool.approval_requested` event has come",
            tenant=tenant,
            task=task_id,
        )
    answer: dict[str, Any] = {"approved": approved}
    if reason:
        answer["reason"] = reason
    return await store.send_signal(task_id, name, answer, tenant=tenant)
