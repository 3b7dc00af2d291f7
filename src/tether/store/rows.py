"""Stored rows to records and back: JSON columns, payload versions (upcast on read by
``payloads``), step outputs stored without their messages (``step_payload``), the
fencing error.

Engine-neutral: a row is anything indexable by column name (``sqlite3.Row``, a dict
from psycopg's ``dict_row``), with JSON columns held as JSON text. Column names are
those of ``migrations/<engine>/0001_initial.sql``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from tether import errors, types
from tether.store import payloads, step_payload


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


STEP_COLUMNS = (
    "task_id", "idx", "kind", "name", "fingerprint", "status", "output", "error", "attempts",
    "started_at", "finished_at", "worker", "message_seqs", "usage", "payload_version",
)  # fmt: skip


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""One encoder for every stored JSON value (``json.dumps`` with options builds one a call)."""


def dumps(value: Any, what: str) -> str:
    """Compact JSON text; ``InvalidInput`` naming ``what`` when the value is not JSON."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"{what} is not JSON-serializable: {exc}") from exc


def dumps_opt(value: Any, what: str) -> str | None:
    return None if value is None else dumps(value, what)


def final_values(
    task_id: str, status: str, output: Any, error: dict[str, Any] | None
) -> tuple[str | None, str | None]:
    """``finish_task``'s checked inputs on every engine: a final status, JSON output and error."""
    if status not in types.FINAL_STATUSES:
        raise errors.InvalidInput(
            f"finish_task needs a final status (completed, failed, cancelled), got {status!r}",
            task=task_id,
        )
    return dumps_opt(output, f"output of task {task_id}"), dumps_opt(
        error, f"error of task {task_id}"
    )


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def step_values(
    step: types.StepRecord,
    message_seqs: tuple[int, ...],
    messages: Sequence[types.Message] = (),
) -> tuple[Any, ...]:
    """A step record as the values of ``STEP_COLUMNS``, in that order; ``messages``
    are those its commit appends (at ``message_seqs``): a copy of one in the output is
    stored as a reference to it (``step_payload.compact``)."""
    what = f"step {step.index} of task {step.task_id}"
    output = step.output
    if messages and output is not None:
        output = step_payload.compact(output, [m.to_dict() for m in messages])
    return (
        step.task_id, step.index, step.kind, step.name, step.fingerprint, step.status,
        dumps_opt(output, f"output of {what}"), dumps_opt(step.error, f"error of {what}"),
        step.attempts, step.started_at, step.finished_at, step.worker,
        dumps(list(message_seqs), f"message seqs of {what}"),
        dumps_opt(step.usage.to_dict() if step.usage else None, f"usage of {what}"),
        types.PAYLOAD_VERSION,
    )  # fmt: skip


def session(row: Row) -> types.SessionRecord:
    return types.SessionRecord(
        id=row["id"],
        tenant=row["tenant"],
        agent=row["agent"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seq=row["last_seq"],
        state=json.loads(row["state"]),
    )


def task(row: Row) -> types.TaskRecord:
    return types.TaskRecord(
        id=row["id"],
        tenant=row["tenant"],
        session_id=row["session_id"],
        agent=row["agent"],
        status=row["status"],
        input=row["input"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        output=loads(row["output"]),
        error=loads(row["error"]),
        spec=row["spec"],
        input_seq=row["input_seq"],
        idempotency_key=row["idempotency_key"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        lease_epoch=row["lease_epoch"],
        runs=row["runs"],
        cancel_requested=bool(row["cancel_requested"]),
        trace_context=loads(row["trace_context"]),
        wait=loads(row["wait"]),
        wake_at=row["wake_at"],
    )


def message_payload(row: Row) -> Any:
    """A ``messages`` row's payload in the current format (``Message.to_dict()``)."""
    return payloads.REGISTRY.upcast(
        "message",
        row["payload_version"],
        json.loads(row["payload"]),
        table="messages",
        row=f"(session_id {row['session_id']}, seq {row['seq']})",
    )


def message(row: Row) -> types.StoredMessage:
    payload = message_payload(row)
    return types.StoredMessage(
        seq=row["seq"],
        message=types.Message.from_dict(payload),
        task_id=row["task_id"],
        created_at=row["created_at"],
    )


def _step_ref(row: Row) -> str:
    return f"(task_id {row['task_id']}, idx {row['idx']})"


def step_payload_of(row: Row) -> dict[str, Any]:
    """A ``steps`` row's JSON columns as one payload in the current format; its output
    may still hold references to messages (``step_payload``), which ``journal`` resolves."""
    try:
        parsed = {
            "output": loads(row["output"]),
            "error": loads(row["error"]),
            "usage": loads(row["usage"]),
            "message_seqs": json.loads(row["message_seqs"]),
        }
    except ValueError as exc:
        raise errors.StoreCorrupt(
            f"the steps row {_step_ref(row)} holds text that is not JSON ({exc}); restore "
            "that row from a backup (`tether doctor` lists every such row)"
        ) from exc
    payload: dict[str, Any] = payloads.REGISTRY.upcast(
        "step",
        row["payload_version"],
        parsed,
        table="steps",
        row=_step_ref(row),
    )
    return payload


def referenced_seqs(step_rows: Sequence[Row], step_payloads: Sequence[dict[str, Any]]) -> list[int]:
    """The seqs of the session's messages these steps' outputs refer to, ascending."""
    seqs: set[int] = set()
    for row, payload in zip(step_rows, step_payloads, strict=True):
        seqs.update(
            step_payload.referenced(payload["output"], payload["message_seqs"], row=_step_ref(row))
        )
    return sorted(seqs)


def journal(
    step_rows: Sequence[Row],
    step_payloads: Sequence[dict[str, Any]],
    message_rows: Iterable[Row],
) -> list[types.StepRecord]:
    """Step records from their rows, their ``step_payload_of`` payloads and the rows of
    the messages they refer to (those at ``referenced_seqs``): each output as recorded."""
    messages = {int(r["seq"]): message_payload(r) for r in message_rows}
    return [step(r, p, messages) for r, p in zip(step_rows, step_payloads, strict=True)]


def step(row: Row, payload: dict[str, Any], messages: dict[int, Any]) -> types.StepRecord:
    seqs = tuple(payload["message_seqs"])
    return types.StepRecord(
        task_id=row["task_id"],
        index=row["idx"],
        kind=row["kind"],
        name=row["name"],
        fingerprint=row["fingerprint"],
        status=row["status"],
        output=step_payload.expand(payload["output"], seqs, messages, row=_step_ref(row)),
        error=payload["error"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker=row["worker"],
        message_seqs=seqs,
        usage=types.Usage.from_dict(payload["usage"]),
    )


def event(row: Row) -> types.EventRecord:
    data = payloads.REGISTRY.upcast(
        "event",
        row["payload_version"],
        json.loads(row["data"]),
        table="events",
        row=f"(task_id {row['task_id']}, seq {row['seq']})",
    )
    return types.EventRecord(
        task_id=row["task_id"],
        seq=row["seq"],
        name=row["name"],
        at=row["at"],
        data=data,
        step=row["step"],
    )


def attempt(row: Row) -> types.StepAttempt:
    return types.StepAttempt(
        task_id=row["task_id"],
        index=row["idx"],
        attempt=row["attempt"],
        error=json.loads(row["error"]),
        delay=row["delay"],
        worker=row["worker"],
        at=row["at"],
    )


def run(row: Row) -> types.TaskRun:
    return types.TaskRun(
        task_id=row["task_id"],
        run=row["run"],
        worker=row["worker"],
        epoch=row["epoch"],
        started_at=row["started_at"],
        from_step=row["from_step"],
        reason=row["reason"],
    )


def lease_lost(lease: types.Lease, status: str, epoch: int) -> errors.LeaseLost:
    """The fencing error for a write whose lease no longer holds the task."""
    return errors.LeaseLost(
        f"worker {lease.owner} lost its lease on task {lease.task_id}: it holds epoch "
        f"{lease.epoch} but the task is {status} at epoch {epoch}, so this write was "
        "rejected; the task continues from its journal under the current lease",
        task=lease.task_id,
    )
