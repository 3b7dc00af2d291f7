"""Running one claimed task: rebuild its state from the store, run the function, finish.

The function always runs from its beginning; the journal makes every completed step
a replay, so the task continues exactly where the last run stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, assert_never

from tether import errors, retry, types
from tether.execution.committer import Committer
from tether.execution.context import OnPhase, TaskContext, TaskRun
from tether.execution.emitter import Emitter
from tether.execution.lease import LeaseKeeper
from tether.execution.settings import ExecutionSettings
from tether.execution.threads import SyncThreads
from tether.observe import events
from tether.observe import logging as obslog
from tether.store.base import Claim, Finish, Store

_log = logging.getLogger("tether.execution.runner")

Outcome = Literal[
    "abandoned", "parked", "handed_over", "released", "cancelled", "failed", "crashed"
]

OUTCOMES: tuple[tuple[type[BaseException], Outcome], ...] = (
    (errors.LeaseLost, "abandoned"),  # another worker holds the task now: leave it
    (errors.TaskWaiting, "parked"),  # waits for a signal or a time, holding no lease
    (errors.StepHandedOver, "handed_over"),  # a stuck step: released for a fresh run
    (asyncio.CancelledError, "released"),  # drain or shutdown: given back at once
    (errors.TaskCancelled, "cancelled"),  # someone asked: the task ends cancelled
    (errors.TetherError, "failed"),  # a classified failure: the task ends failed
    (Exception, "crashed"),  # anything else the workflow raised: WorkflowFailed
)
"""How a run of a task ends when its workflow raises, first match wins; ``_end`` does
what each outcome means. Anything not listed (KeyboardInterrupt) propagates."""


def outcome_of(exc: BaseException) -> Outcome | None:
    for kind, outcome in OUTCOMES:
        if isinstance(exc, kind):
            return outcome
    return None


class Workflow(Protocol):
    """A durable function: ``await workflow(ctx, input)`` returns the task's JSON output."""

    name: str
    retries: retry.Retries

    def __call__(self, ctx: TaskContext, input: str, /) -> Awaitable[Any]: ...


class FunctionWorkflow:
    """A plain ``async def fn(ctx, input)`` registered with ``@runtime.workflow``."""

    def __init__(
        self,
        fn: Callable[[TaskContext, str], Awaitable[Any]],
        *,
        name: str | None = None,
        retries: retry.Retries | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.retries = retries or retry.Retries()

    def __call__(self, ctx: TaskContext, input: str) -> Awaitable[Any]:
        return self.fn(ctx, input)


class TaskRunner:
    def __init__(
        self,
        store: Store,
        workflows: Mapping[str, Workflow],
        *,
        instance_id: str,
        settings: ExecutionSettings,
        observers: events.Observer,
        committer: Committer,
        threads: SyncThreads | None = None,
        on_phase: OnPhase | None = None,
    ) -> None:
        self.store = store
        self._on_phase = on_phase
        self.threads = threads
        self.release_reason = "drain"
        """Why a task released at a step boundary leaves (``drain``, ``memory_limit``,
        ``threads_exhausted``): the ``reason`` of its ``task.released`` event."""
        self.workflows = workflows
        self.instance_id = instance_id
        """The worker instance's name (``execution.worker.Worker.instance_id``) that signs
        steps, runs and events."""
        self.settings = settings
        self.observers = observers
        self.committer = committer

    async def run(self, claim: Claim) -> types.TaskRecord | None:
        """Run a claimed task to its end. None when the task left this worker unfinished
        (lease lost, or released because the worker is stopping). Every record logged
        meanwhile carries the task's tenant, session, task and worker ids."""
        task = claim.task
        with obslog.bind(
            tenant=task.tenant, session=task.session_id, task=task.id, worker=self.instance_id
        ):
            return await self._run(claim)

    async def _run(self, claim: Claim) -> types.TaskRecord | None:
        task, lease = claim.task, claim.lease
        emitter = Emitter(task, self.observers, self.instance_id)
        keeper = LeaseKeeper(
            self.store, lease, self.settings, emitter, cancel_requested=task.cancel_requested
        )
        start = claim.start or await self.store.read_task_start(task)  # read with the claim?
        journal, attempts, session = start.journal, start.attempts, start.session
        history = start.history
        started = types.now()
        session_age = started - session.created_at
        emitter.emit(
            events.TASK_STARTED,
            reason=claim.reason,
            run=task.runs,
            from_step=len(journal),
            session_age=session_age,
            trace_context=task.trace_context,
        )
        if claim.reason == "wake":
            emitter.emit(events.TASK_WOKE, **woke_data(task, started))
        elif claim.reason != "start":
            emitter.emit(events.TASK_RECOVERED, reason=claim.reason, from_step=len(journal))

        workflow = self.workflows.get(task.agent)
        if workflow is None:
            err: errors.TetherError = errors.UnknownAgent(
                f"no agent or workflow named {task.agent!r} is registered in this worker; "
                "start the worker with the spec that defines it",
                tenant=task.tenant,
                session=task.session_id,
                task=task.id,
            )
            return await self._finish(keeper, emitter, "failed", None, err, started, session)

        ctx = TaskRun(
            task=task,
            lease=keeper,
            journal=journal,
            attempts=attempts,
            history=history,
            session=session,
            store=self.store,
            committer=self.committer,
            emitter=emitter,
            settings=self.settings,
            retries=workflow.retries,
            instance_id=self.instance_id,
            in_thread=self.threads.run if self.threads is not None else None,
            on_phase=self._on_phase,
        )
        me = asyncio.current_task()
        keeper.start(me)
        try:
            try:
                output = await workflow(TaskContext(ctx), task.input)
                _check_output(output, task)
            finally:
                await keeper.stop()
        except BaseException as exc:
            outcome = outcome_of(exc)
            if outcome is None:
                raise
            return await self._end(outcome, exc, keeper, emitter, ctx, started, session)
        return await self._finish(keeper, emitter, "completed", output, None, started, session)

    async def _end(
        self,
        outcome: Outcome,
        exc: BaseException,
        keeper: LeaseKeeper,
        emitter: Emitter,
        ctx: TaskRun,
        started: float,
        session: types.SessionRecord,
    ) -> types.TaskRecord | None:
        """What a run that raised does, by its ``outcome`` (``OUTCOMES``): None when the
        task left this worker unfinished; its final record when it ended here."""
        task = emitter.task
        match outcome:
            case "abandoned":
                keeper.mark_lost()
                _log.warning("task.abandoned", extra={"reason": "lease_lost"})
                return None
            case "parked":
                assert isinstance(exc, errors.TaskWaiting)
                await self._wait(keeper, emitter, exc)
                return None
            case "handed_over":
                assert isinstance(exc, errors.StepHandedOver)
                _log.warning("task.handed_over", extra={"detail": exc.message})
                await self._release(keeper, emitter, ctx, reason="stuck")
                return None
            case "released":
                if keeper.lost:
                    _log.warning("task.abandoned", extra={"reason": "lease_lost_mid_step"})
                    return None
                await self._release(keeper, emitter, ctx, reason=self.release_reason)
                raise exc
            case "cancelled":
                return await self._finish(
                    keeper, emitter, "cancelled", None, None, started, session
                )
            case "failed":
                assert isinstance(exc, errors.TetherError)
                exc.with_ids(tenant=task.tenant, session=task.session_id, task=task.id)
                return await self._finish(keeper, emitter, "failed", None, exc, started, session)
            case "crashed":
                err = errors.WorkflowFailed(
                    f"workflow {task.agent!r} raised {type(exc).__name__}: {exc}",
                    tenant=task.tenant,
                    session=task.session_id,
                    task=task.id,
                    step=ctx.step_index,
                )
                _log.error(
                    "task.workflow_raised",
                    exc_info=exc,
                    extra={"error_type": type(exc).__name__},
                )
                return await self._finish(keeper, emitter, "failed", None, err, started, session)
            case _:
                assert_never(outcome)

    async def _finish(
        self,
        keeper: LeaseKeeper,
        emitter: Emitter,
        status: types.TaskStatus,
        output: Any,
        error: errors.TetherError | None,
        started: float,
        session: types.SessionRecord,
    ) -> types.TaskRecord | None:
        name = {
            "completed": events.TASK_COMPLETED,
            "failed": events.TASK_FAILED,
            "cancelled": events.TASK_CANCELLED,
        }[status]
        data: dict[str, Any] = {
            "duration": types.now() - started,
            "session_age": types.now() - session.created_at,
        }
        if error is not None:
            data["error"] = error.to_dict()
            data["step_error"] = error.step is not None and not isinstance(
                error, errors.BudgetExhausted | errors.NonDeterminismError
            )
        event = events.TaskEvent(
            name=name,
            tenant=emitter.task.tenant,
            session_id=emitter.task.session_id,
            task_id=emitter.task.id,
            agent=emitter.task.agent,
            worker=self.instance_id,
            data=data,
        )
        taken = emitter.take()
        try:
            # in the committer's next batch, beside other tasks' steps and ends
            record = await self.committer.finish(
                Finish(
                    keeper.lease,
                    status=status,
                    output=output,
                    error=errors.error_record(error) if error is not None else None,
                    events=(*taken, event.stored()),
                )
            )
        except errors.LeaseLost:
            keeper.mark_lost()
            return None
        self.observers.on_event(event)
        return record

    async def _wait(
        self, keeper: LeaseKeeper, emitter: Emitter, waiting: errors.TaskWaiting
    ) -> None:
        """Park the task (``waiting``, no lease) with its events; the slot is free again."""
        wait = waiting.wait
        emitter.emit(
            events.TASK_WAITING,
            step=wait.get("step"),
            wait_kind=wait.get("kind"),
            wait_name=wait.get("name"),
            wake_at=waiting.wake_at,
        )
        taken = emitter.take()
        try:
            await asyncio.shield(
                self.store.wait_task(keeper.lease, wait=wait, wake_at=waiting.wake_at, events=taken)
            )
        except errors.LeaseLost:
            keeper.mark_lost()
        except errors.TetherError as exc:
            _log.warning(
                "task.park_failed",
                extra={
                    "task": emitter.task.id,
                    "error": exc.message,
                    "detail": "its lease will expire and a worker will take it back to the "
                    "same wait",
                },
            )

    async def _release(
        self, keeper: LeaseKeeper, emitter: Emitter, ctx: TaskRun, *, reason: str
    ) -> None:
        """Give the task back at once (drain), so another worker continues it now."""
        emitter.emit(events.TASK_RELEASED, from_step=ctx.steps_done, reason=reason)
        taken = emitter.take()
        try:
            await asyncio.shield(self._release_now(keeper, taken))
        except errors.LeaseLost:
            keeper.mark_lost()
        except errors.TetherError as exc:
            _log.warning(
                "task.release_failed",
                extra={
                    "task": emitter.task.id,
                    "error": exc.message,
                    "detail": "its lease will expire",
                },
            )

    async def _release_now(self, keeper: LeaseKeeper, taken: tuple[types.NewEvent, ...]) -> None:
        await self.store.release_lease(keeper.lease, events=taken)


def woke_data(task: types.TaskRecord, now: float) -> dict[str, Any]:
    """``task.woke``'s data: what the task waited for, and how long (since it parked)."""
    wait = task.wait or {}
    since = wait.get("since")
    return {
        "wait_kind": wait.get("kind"),
        "wait_name": wait.get("name"),
        "waited": now - since if isinstance(since, int | float) else None,
    }


def _check_output(output: Any, task: types.TaskRecord) -> None:
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        raise errors.WorkflowFailed(
            f"workflow {task.agent!r} returned {type(output).__name__}, which cannot be stored "
            "as JSON; return str, numbers, lists or dicts",
            task=task.id,
        ) from exc
