"""A step commit's rules shared by both engines' write paths (each engine writes the
step its own, tuned way: ``sqlite_queries``, ``postgres_commits``): when a retried
commit is one already applied, and what a rejected step record is told."""

from __future__ import annotations

import json

from tether import errors, types
from tether.store.program import Program, Query


def already_committed(
    commit: types.StepCommit, session_id: str, fingerprint: str | None, message_seqs: str | None
) -> Program[types.CommitResult | None]:
    """A commit retried after its connection was lost may have been applied already: if
    the journal holds this step (``fingerprint``, ``message_seqs`` as stored; None when
    no step is at that index) with the same fingerprint and the same messages (the
    lease was checked by the caller), its seqs instead of a failure. A different step at
    that index is left to the primary key, which reports a ``Conflict``."""
    if fingerprint is None or fingerprint != commit.step.fingerprint or message_seqs is None:
        return None
    seqs = tuple(int(s) for s in json.loads(message_seqs))
    if commit.messages:
        marks = ", ".join(f":s{i}" for i in range(len(seqs))) or "NULL"
        stored = yield Query(
            f"SELECT payload FROM messages WHERE session_id = :sid AND seq IN ({marks})"
            " ORDER BY seq",
            {"sid": session_id, **{f"s{i}": s for i, s in enumerate(seqs)}},
        )
        if [json.loads(r["payload"]) for r in stored] != [m.to_dict() for m in commit.messages]:
            return None
    elif seqs != commit.step.message_seqs:
        return None
    return types.CommitResult(message_seqs=seqs)


def step_rejected(step: types.StepRecord, exc: Exception, *, duplicate: bool) -> errors.TetherError:
    """The error reported for a step record the store refused: ``duplicate`` (the step
    index is journaled already) is a ``Conflict``; anything else (a check constraint)
    is ``InvalidInput``."""
    err: errors.TetherError
    if duplicate:
        err = errors.Conflict(
            "this step is already journaled; each step index is committed once",
            task=step.task_id,
            step=step.index,
        )
    else:
        err = errors.InvalidInput(
            f"the store rejected this step record ({exc}); check its kind and status",
            task=step.task_id,
            step=step.index,
        )
    err.__cause__ = exc
    return err
