"""Durable waits inside a task: ``wait_for_signal``, and sleeps that hold no worker.

A wait is one journaled step. When what it waits for is already there (a signal sent
before, a deadline passed), the step completes at once. Otherwise the step raises
``TaskWaiting``: the runner parks the task (``Store.wait_task``: status ``waiting``, no
lease, the worker's slot freed) and a signal or the due time makes it claimable on
any worker. That run replays the journal up to the wait, finds the signal, and
commits the step together with the signal's consumption, so each signal is consumed
exactly once and replay returns the same data.

The wait's deadline and start time are kept with the task (``TaskRecord.wait``), so a
timeout counts from the first time the task reached the wait, whichever worker resumes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether import errors, retry, types
from tether.store import waits as store_waits

if TYPE_CHECKING:
    from tether.execution.context import Heartbeat, TaskRun


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""``wait_for_signal``'s ``default`` when none is given: a timeout raises ``SignalTimeout``."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Received:
    """What a signal step returns while it runs: the data, and the signal it consumes."""

    seq: int | None
    data: Any


def _encode(value: Any) -> Any:
    return value.data if isinstance(value, _Received) else value


def _consumes(value: Any) -> int | None:
    return value.seq if isinstance(value, _Received) else None


def _stored_wait(ctx: TaskRun, index: int, kind: str) -> dict[str, Any] | None:
    """The wait this task recorded for step ``index`` when it parked, if it did."""
    wait = ctx.task.wait
    if wait and wait.get("step") == index and wait.get("kind") == kind:
        return wait
    return None


def _since_and_deadline(
    ctx: TaskRun, index: int, kind: str, deadline: Callable[[float], float | None]
) -> tuple[float, float | None]:
    stored = _stored_wait(ctx, index, kind)
    if stored is not None:
        since = float(stored.get("since") or types.now())
        recorded = stored.get("deadline")
        return since, float(recorded) if isinstance(recorded, int | float) else None
    since = types.now()
    return since, deadline(since)


async def wait_for_signal(
    ctx: TaskRun,
    name: str,
    *,
    timeout: float | None = None,
    default: Any = NO_DEFAULT,
    announce: Callable[[], None] | None = None,
    about: dict[str, Any] | None = None,
) -> Any:
    """The data of the next signal ``name`` sent to this task (see ``TaskRun.wait_for_signal``).

    ``announce`` runs when the task is about to start waiting (not when it resumes a
    wait it announced already, nor when the signal is there): approvals emit their
    ``tool.approval_requested`` event there. ``about`` is kept with the task's wait
    (``wait["about"]``) for those who answer it: an approval's tool and arguments."""
    store_waits.check_name(name, task=ctx.task_id)
    if timeout is not None and not timeout >= 0:
        raise errors.InvalidInput(
            f"wait_for_signal({name!r}) needs a timeout of 0 seconds or more, got {timeout}",
            task=ctx.task_id,
        )
    index = ctx.step_index

    async def execute(attempt: int, beat: Heartbeat) -> Any:
        found = await ctx.next_signal(name)
        if found is not None:
            return _Received(found.seq, found.data)
        since, deadline = _since_and_deadline(
            ctx, index, "signal", lambda t: None if timeout is None else t + timeout
        )
        if deadline is not None and types.now() >= deadline:
            if default is not NO_DEFAULT:
                return _Received(None, default)
            raise errors.SignalTimeout(
                f"no signal {name!r} arrived within {timeout}s of waiting; send it sooner, "
                "raise the timeout, or pass default= to go on without it",
                task=ctx.task_id,
                step=index,
            )
        if announce is not None and _stored_wait(ctx, index, "signal") is None:
            announce()
        raise errors.TaskWaiting(
            f"task {ctx.task_id} waits for signal {name!r} at step {index}",
            task=ctx.task_id,
            wait={"step": index, "kind": "signal", "name": name, "deadline": deadline,
                  "since": since, **({"about": about} if about else {})},
            wake_at=deadline,
        )  # fmt: skip

    value = await ctx.run_step(_signal_spec(name, timeout), execute)
    return _encode(value)


def _signal_spec(name: str, timeout: float | None) -> Any:
    # ``context`` imports this module (its methods delegate here), so not at the top.
    from tether.execution.context import StepCodec, StepSpec

    codec = StepCodec(encode=_encode, consumes=_consumes)
    return StepSpec("signal", name, {"timeout": timeout}, retry.NO_RETRY, codec=codec)


def _sleep_spec(name: str, inputs: dict[str, Any]) -> Any:
    from tether.execution.context import StepSpec

    return StepSpec("sleep", name, inputs, retry.NO_RETRY)


async def sleep(ctx: TaskRun, seconds: float) -> None:
    """A journaled pause; longer than ``ExecutionSettings.durable_sleep_after`` it is a
    durable timer: the task waits holding no lease and is resumed when due."""
    if not seconds >= 0:
        raise errors.InvalidInput(
            f"ctx.sleep needs 0 seconds or more, got {seconds}", task=ctx.task_id
        )
    await _sleep_step(ctx, "sleep", {"seconds": seconds}, lambda since: since + seconds)


async def sleep_until(ctx: TaskRun, when: datetime.datetime) -> None:
    """A journaled pause until ``when`` (a naive datetime is local time)."""
    if not isinstance(when, datetime.datetime):
        raise errors.InvalidInput(
            f"ctx.sleep_until needs a datetime, got {type(when).__name__}", task=ctx.task_id
        )
    due = when.timestamp()
    await _sleep_step(ctx, "sleep_until", {"until": due}, lambda since: due)


async def _sleep_step(
    ctx: TaskRun, name: str, inputs: dict[str, Any], deadline: Callable[[float], float]
) -> None:
    index = ctx.step_index

    async def execute(attempt: int, beat: Heartbeat) -> None:
        since, due = _since_and_deadline(ctx, index, "sleep", deadline)
        assert due is not None
        remaining = due - types.now()
        if remaining <= ctx.settings.durable_sleep_after:
            if remaining > 0:
                await asyncio.sleep(remaining)
            return None
        raise errors.TaskWaiting(
            f"task {ctx.task_id} sleeps until {due:.3f} at step {index}",
            task=ctx.task_id,
            wait={"step": index, "kind": "sleep", "name": name, "deadline": due, "since": since},
            wake_at=due,
        )

    await ctx.run_step(_sleep_spec(name, inputs), execute)
