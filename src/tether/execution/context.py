"""The durable-function context: every side effect is a journaled step.

Each ``await ctx.<step>(…)`` first looks in the journal. A recorded step returns its
recorded output without running (replay), after proving by fingerprint that it is
the same step; the first unrecorded step runs for real and is committed, with the
session messages it produced, before the function goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

from tether import errors, retry, tools, types
from tether.context import truncation
from tether.execution import waits
from tether.execution.committer import Committer
from tether.execution.emitter import Emitter
from tether.execution.fingerprint import RequestFingerprints, describe, fingerprint
from tether.execution.settings import ExecutionSettings
from tether.models import streaming
from tether.models.base import Model
from tether.observe import events
from tether.observe import logging as obslog
from tether.store.base import MemoryHit, MemoryItem, Signal, Store
from tether.store.checkpoints import Checkpoints

T = TypeVar("T")


class Heartbeat:
    """Liveness of one running step; a sync tool in a thread may beat it."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = self.started
        self.beats = 0

    def beat(self) -> None:
        self.last = time.monotonic()
        self.beats += 1


class LeaseView:
    """What a context needs from the lease keeper: the current lease and its flags."""

    lease: types.Lease
    lost: bool = False
    cancel_requested: bool = False

    def mark_lost(self) -> None:
        """The lease was taken over (the keeper also emits ``lease.lost``, once)."""
        self.lost = True


@dataclasses.dataclass(frozen=True, slots=True)
class StepCodec:
    """How a step's value maps to what is stored: its JSON, messages and session state."""

    encode: Callable[[Any], Any] = lambda v: v
    decode: Callable[[Any], Any] = lambda v: v
    messages: Callable[[Any], Sequence[types.Message]] = lambda v: ()
    session_state: Callable[[Any], dict[str, Any] | None] = lambda v: None
    consumes: Callable[[Any], int | None] = lambda v: None
    """The signal (its ``seq``) the step consumes, committed with it (``execution.waits``)."""


_PLAIN = StepCodec()
"""A value stored as it is, appending no message (JSON in, JSON out)."""


@dataclasses.dataclass(frozen=True, slots=True)
class StepSpec(Generic[T]):
    """One step, described once by its caller: what it is, how it is stored and retried.

    ``fingerprint`` stands for the fingerprint of ``inputs`` when given (a model step's
    is computed incrementally); ``inputs`` then only describes them in error messages.
    ``on_failure`` turns a final failure into a value that is committed (status
    ``failed``) and returned instead of raised. ``started_data`` goes with each
    ``step.started`` event (a model step's ``model``, a tool step's ``tool_call_id``),
    ``completed_data(value)`` with ``step.completed``."""

    kind: types.StepKind
    name: str
    inputs: Any
    policy: retry.RetryPolicy
    where: str = "agent"
    fingerprint: str | None = None
    codec: StepCodec = _PLAIN
    on_failure: Callable[[errors.TetherError], T] | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    completed_data: Callable[[T], dict[str, Any]] | None = None
    started_data: dict[str, Any] | None = None


Phase = Literal["between", "step", "backoff"]
"""Where a task stands: between two steps, in a step, or waiting out a retry's backoff."""

OnPhase = Callable[[str, Phase], None]
"""Told ``(task_id, phase)`` as a task moves: how a draining worker releases a task at its
next step boundary (a direct call, not an event observer: observers may be anything)."""


class TaskRun:
    """One run of a task: its journal, lease, events and retries, under the ``ctx`` a
    durable function receives. tether's own layers (the agent loop, waits, approvals,
    the integrations) work on it through ``task_run(ctx)``; users see ``TaskContext``.
    Not shared between tasks."""

    def __init__(
        self,
        *,
        task: types.TaskRecord,
        lease: LeaseView,
        journal: list[types.StepRecord],
        attempts: list[types.StepAttempt],
        history: list[types.StoredMessage],
        session: types.SessionRecord,
        store: Store,
        committer: Committer,
        emitter: Emitter,
        settings: ExecutionSettings,
        retries: retry.Retries,
        instance_id: str,
        in_thread: tools.InThread | None = None,
        on_phase: OnPhase | None = None,
    ) -> None:
        self.task = task
        self._on_phase = on_phase
        self._in_thread = in_thread
        self.history = history
        self.session_state: dict[str, Any] = dict(session.state)
        self.session_created_at = session.created_at
        self._lease = lease
        # By index: the tool steps of one turn may commit out of order, leaving gaps.
        self._journal = {record.index: record for record in journal}
        self._steps_at_start = len(journal)
        self._last_recorded = max(self._journal, default=-1)
        self._store = store
        self._committer = committer
        self.emitter = emitter
        self.settings = settings
        self.retries = retries
        self.instance_id = instance_id
        """The worker instance running this task; its steps record it as ``worker``."""
        self._index = 0
        self._attempts_before: dict[int, int] = {}
        for a in attempts:
            self._attempts_before[a.index] = max(self._attempts_before.get(a.index, 0), a.attempt)
        self.budget = retry.RetryBudget(retries.budget, spent=len(attempts))
        self.replayed = 0
        self.steps_done = 0
        """Steps of this task in the journal so far (replayed or committed by this run)."""
        self._appended: dict[int, tuple[int, ...]] = {}
        self._requests = RequestFingerprints()

    # ---- identity ----------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def session_id(self) -> str:
        return self.task.session_id

    @property
    def tenant(self) -> str:
        return self.task.tenant

    @property
    def step_index(self) -> int:
        """The index the next step will get."""
        return self._index

    @property
    def replaying(self) -> bool:
        return self._index <= self._last_recorded

    def recorded(self, index: int) -> bool:
        """Whether step ``index`` is in the journal (it will replay, not run)."""
        return index in self._journal

    def appended_by(self, index: int) -> tuple[int, ...]:
        """The session seqs of the messages step ``index`` appended, once this run has
        committed or replayed it (read ``step_index`` before starting the step)."""
        try:
            return self._appended[index]
        except KeyError:
            raise errors.InvalidInput(
                f"step {index} of task {self.task.id} has not run in this run yet",
                **self._ids(index),
            ) from None

    def reserve_steps(self, n: int) -> int:
        """Take the next ``n`` step indices for steps that will run concurrently (the
        tool calls of one turn), so each gets the same index on every run whatever
        order they finish in; returns the first. Pass each to ``run_step(index=…)``."""
        first = self._index
        self._index += n
        return first

    @property
    def lease(self) -> types.Lease:
        """The lease that fences this task's writes."""
        return self._lease.lease

    async def next_signal(self, name: str) -> Signal | None:
        """The oldest signal ``name`` sent to this task and not yet consumed."""
        return await self._store.next_signal(self.task.id, name)

    @property
    def steps_at_start(self) -> int:
        """How many steps the journal held when this run started."""
        return self._steps_at_start

    @property
    def store_url(self) -> str:
        """The store's URL (a LangGraph saver names its store by it)."""
        return self._store.url

    def checkpoints(self) -> Checkpoints:
        """The store's LangGraph checkpoint tables (written fenced by this run's lease)."""
        return self._store.checkpoints()

    async def commit_record(self, record: types.StepRecord) -> None:
        """Commit a step that ran outside ``run_step`` (a LangGraph node), fenced, with
        the events emitted since the last commit; raises what the store refused."""
        taken = self.emitter.take()
        commit = types.StepCommit(lease=self._lease.lease, step=record, events=taken)
        [result] = await self._store.commit_steps([commit])
        if isinstance(result, BaseException):
            self.emitter.give_back(taken)
            raise result

    async def append_events_unfenced(self) -> None:
        """Write the events emitted so far without the lease, which is gone (a refusal
        to record); kept for the next write if the store is unreachable."""
        taken = self.emitter.take()
        try:
            await self._store.append_events(self.task.id, taken)
        except errors.TetherError:
            self.emitter.give_back(taken)

    async def add_memory(self, items: Sequence[MemoryItem]) -> None:
        """Store items in this session's vector memory, fenced by this task's lease."""
        await self._store.add_memory(self._lease.lease, self.task.session_id, items)

    async def search_memory(self, vector: Sequence[float], k: int) -> list[MemoryHit]:
        """The ``k`` items of this session's memory most similar to ``vector``."""
        return await self._store.search_memory(self.task.session_id, vector, k)

    def at_phase(self, phase: Phase) -> None:
        """Say where this task stands (``run_step`` does; an integration that runs its
        own steps, such as LangGraph's nodes, calls it too): a draining worker releases
        a task that is about to start a step or waits out a backoff."""
        if self._on_phase is not None:
            self._on_phase(self.task.id, phase)

    def _ids(self, step: int | None = None) -> dict[str, Any]:
        return {
            "tenant": self.task.tenant,
            "session": self.task.session_id,
            "task": self.task.id,
            "step": step,
        }

    # ---- the step API ------------------------------------------------------

    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once as a journaled step; its result must be JSON."""

        async def execute(attempt: int, beat: Heartbeat) -> Any:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            _require_json(result, f"step {name!r}")
            return result

        spec: StepSpec[Any] = StepSpec(
            "custom", name, {"args": list(args), "kwargs": kwargs}, self.retries.custom
        )
        return await self.run_step(spec, execute)

    async def sleep(self, seconds: float) -> None:
        """A journaled pause: on replay it does not wait again. Longer than the settings'
        ``durable_sleep_after`` it holds no lease nor worker slot: the task is ``waiting``
        and any worker resumes it when it is due."""
        await waits.sleep(self, seconds)

    async def sleep_until(self, when: datetime.datetime) -> None:
        """A journaled pause until ``when``, durable like a long ``sleep``."""
        await waits.sleep_until(self, when)

    async def wait_for_signal(
        self, name: str, *, timeout: float | None = None, default: Any = waits.NO_DEFAULT
    ) -> Any:
        """Wait for the signal ``name`` (``tether signal``, ``POST …/signals/{name}``,
        ``runtime.signal``) and return its JSON data; one journaled step, so replay
        returns the same data. A signal sent earlier is kept and consumed here; each
        signal is consumed once. While it waits the task is ``waiting``: it holds no
        lease and no worker slot. After ``timeout`` seconds without the signal it
        raises ``SignalTimeout`` (not retried), or returns ``default`` when given."""
        return await waits.wait_for_signal(self, name, timeout=timeout, default=default)

    async def call_model(
        self,
        model: Model,
        request: types.ModelRequest,
        *,
        name: str | None = None,
        session_state: Callable[[types.ModelResponse], dict[str, Any] | None] | None = None,
        prompt_check: truncation.Check | None = None,
    ) -> types.ModelResponse:
        """One journaled model call; its answer joins the session's messages (and
        ``session_state(answer)``, when given, replaces the session's state with it).

        An answer cut off by its token limit is never returned as complete: it is
        retried with a larger ``max_tokens`` (``Retries.truncation_retries``), then fails with
        ``OutputTruncated``."""
        # the answer's max_tokens, grown after each truncation, and how often it grew
        growth = {"max_tokens": request.max_tokens or model.max_output_tokens, "truncations": 0}
        index = self._index

        async def execute(attempt: int, beat: Heartbeat) -> types.ModelResponse:
            sent = (
                request
                if request.max_tokens == growth["max_tokens"]
                else dataclasses.replace(request, max_tokens=growth["max_tokens"])
            )

            def delta(text: str) -> None:
                self.emitter.emit(events.MODEL_DELTA, step=index, attempt=attempt, text=text)

            with streaming.deltas_to(delta):
                response = await model.complete(sent)
            if prompt_check is not None:
                self._check_prompt(prompt_check, response, model, index)
            if response.finish_reason == "length":
                self.emitter.emit(
                    events.OUTPUT_TRUNCATED,
                    step=index,
                    kind="model",
                    step_name=model.name,
                    max_tokens=growth["max_tokens"],
                )
                grown = _grown_max_tokens(growth["max_tokens"], model, response)
                if growth["truncations"] < self.retries.truncation_retries and grown is not None:
                    growth["truncations"] += 1
                    growth["max_tokens"] = grown
                    raise errors.OutputTruncated(
                        f"the answer of model {model.name!r} was cut off at max_tokens="
                        f"{sent.max_tokens}; retrying with max_tokens={grown}",
                        retryable=True,
                    )
                raise errors.OutputTruncated(
                    f"the answer of model {model.name!r} was cut off at max_tokens="
                    f"{sent.max_tokens} and there is no more room to retry; raise "
                    "max_output_tokens, shorten the context, or ask for a shorter answer",
                    retryable=False,
                )
            return response

        step_name = name or model.name
        spec: StepSpec[types.ModelResponse] = StepSpec(
            "model",
            step_name,
            {"model": model.name, "messages": len(request.messages)},
            self.retries.model,
            where="model",
            fingerprint=self._requests.fingerprint("model", step_name, model.name, request),
            codec=StepCodec(
                encode=lambda r: r.to_dict(),
                decode=types.ModelResponse.from_dict,
                messages=lambda r: (r.message,),
                session_state=session_state or _no_state,
            ),
            completed_data=lambda r: _model_completed_data(r, model),
            started_data={"model": model.name},
        )
        return await self.run_step(spec, execute)

    async def call_tool(
        self, tool: tools.Tool, arguments: dict[str, Any] | str | None = None
    ) -> Any:
        """Run a tool once as a journaled step and return what it returned."""
        raw = arguments if arguments is not None else {}
        args = tool.parse_arguments(raw)
        spec: StepSpec[Any] = StepSpec(
            "tool",
            tool.name,
            {"arguments": args},
            tool.retry or self.retries.tool,
            where="tool",
            timeout=tool.timeout or self.settings.tool_timeout,
            heartbeat_timeout=tool.heartbeat_timeout,
        )
        return await self.run_step(spec, self._tool_executor(tool, args))

    async def run_tool_call(
        self,
        tool: tools.Tool | None,
        call: types.ToolCall,
        *,
        index: int | None = None,
        appends: Callable[[types.Message], Sequence[types.Message]] | None = None,
    ) -> types.Message:
        """Answer a model's tool call with a tool message, in one journaled step.

        Whatever goes wrong (unknown tool, malformed JSON, arguments off-schema, a
        tool that raises) becomes an error message the model reads, not a crash.
        ``index`` is a step index from ``reserve_steps``; ``appends(message)``, asked
        once at commit, says which session messages the commit appends (default: the
        step's own), so concurrent calls append theirs in the model's order."""
        name = tool.name if tool is not None else call.name

        def to_message(content: str) -> types.Message:
            return types.Message(role="tool", content=content, tool_call_id=call.id, name=name)

        async def execute(attempt: int, beat: Heartbeat) -> types.Message:
            if tool is None:
                raise errors.UnknownTool(
                    f"there is no tool named {call.name!r}; call one of the tools offered"
                )
            args = tool.parse_arguments(call.arguments)
            result = await self._tool_executor(tool, args)(attempt, beat)
            return to_message(tools.render_result(result))

        spec: StepSpec[types.Message] = StepSpec(
            "tool",
            name,
            {"call_id": call.id, "arguments": call.arguments},
            (tool.retry if tool is not None else None) or self.retries.tool,
            where="tool",
            timeout=(tool.timeout if tool is not None else None) or self.settings.tool_timeout,
            heartbeat_timeout=tool.heartbeat_timeout if tool is not None else None,
            codec=StepCodec(
                encode=lambda m: m.to_dict(),
                decode=types.Message.from_dict,
                messages=appends or (lambda m: (m,)),
            ),
            on_failure=lambda err: to_message(f"Error ({err.error_class}): {err.detail}"),
            started_data={"tool_call_id": call.id},
        )
        return await self.run_step(spec, execute, index=index)

    def _check_prompt(
        self, check: truncation.Check, response: types.ModelResponse, model: Model, index: int
    ) -> None:
        reported = response.usage.prompt_tokens if response.usage else None
        if not check.suspected(reported):
            return
        self.emitter.emit(
            events.PROMPT_TRUNCATED,
            step=index,
            kind="model",
            step_name=model.name,
            counted=check.counted,
            reported=reported,
        )
        if check.strict:
            raise errors.PromptTruncated(
                f"model {model.name!r} reported {reported} prompt tokens for a request "
                f"tether counted at {check.counted}: the server cut the prompt. Give the "
                "server the context the model is configured with (context_window="
                f"{model.context_window}), or lower context_window to the server's",
                **self._ids(index),
            )

    def _tool_executor(
        self, tool: tools.Tool, args: dict[str, Any]
    ) -> Callable[[int, Heartbeat], Awaitable[Any]]:
        async def execute(attempt: int, beat: Heartbeat) -> Any:
            result = await tool.invoke(args, tools.current_step(), in_thread=self._in_thread)
            _require_json(result, f"tool {tool.name!r}")
            return result

        return execute

    # ---- the one mechanism under every step ----------------------------------

    async def run_step(
        self,
        spec: StepSpec[T],
        execute: Callable[[int, Heartbeat], Awaitable[T]],
        *,
        index: int | None = None,
    ) -> T:
        """Replay the step if the journal has it, else run it (with retries) and commit it.

        ``execute(attempt, beat)`` runs one attempt; ``index`` is one taken with
        ``reserve_steps`` (default: the next). Each exit is one helper: a replay hit
        (``_replay``), a commit (``_complete``), a retry after a delay
        (``_back_off``), a give-up (``_give_up``); a lost lease or a cancel stops the
        task at the boundary (``_boundary``), a stuck step hands it over."""
        if index is None:
            index = self._index
            self._index += 1
        fp = spec.fingerprint or fingerprint(spec.kind, spec.name, spec.inputs)
        if index in self._journal:
            return self._replay(self._journal[index], index, spec, fp)
        self._boundary()
        attempt = self._attempts_before.get(index, 0) + 1
        started = types.now()
        while True:
            try:
                value = await self._attempt(spec, execute, index, attempt)
            except errors.TetherSignal:
                raise
            except Exception as exc:
                err = retry.classify(exc, where=spec.where).with_ids(**self._ids(index))
                decision = await self._decide(spec, err, index, attempt)
                if isinstance(decision, retry.GiveUp):
                    return await self._give_up(
                        spec, fp, err, exc, decision, index, attempt, started
                    )
                await self._back_off(spec, err, index, attempt, decision.delay)
                attempt += 1
                continue
            return await self._complete(spec, fp, value, index, attempt, started)

    async def _attempt(
        self,
        spec: StepSpec[T],
        execute: Callable[[int, Heartbeat], Awaitable[T]],
        index: int,
        attempt: int,
    ) -> T:
        """Run one attempt, with its ids bound and its heartbeat guarded."""
        self.emitter.emit(
            events.STEP_STARTED,
            step=index,
            kind=spec.kind,
            step_name=spec.name,
            attempt=attempt,
            **(spec.started_data or {}),
        )
        self.at_phase("step")
        beat = Heartbeat()
        running = tools.ToolContext(
            task_id=self.task.id,
            session_id=self.task.session_id,
            tenant=self.task.tenant,
            step_index=index,
            attempt=attempt,
            _beat=beat.beat,
        )
        with obslog.bind(step=index, attempt=attempt), tools.running_step(running):
            return await self._guard(execute(attempt, beat), beat, spec, index)

    async def _decide(
        self, spec: StepSpec[Any], err: errors.TetherError, index: int, attempt: int
    ) -> retry.RetryAfter | retry.GiveUp:
        """What follows a failed attempt: ``retry.decide``'s answer, unless the step is
        stuck and the settings hand such a task over (raises ``StepHandedOver``)."""
        if (
            isinstance(err, errors.StepStuck)
            and self.settings.on_stuck == "handover"
            and self.budget.allows()
        ):
            await self._hand_over(err, index, spec.kind, spec.name, attempt)
        return retry.decide(err, attempt, spec.policy, self.budget, rand=self.settings.rand)

    async def _back_off(
        self, spec: StepSpec[Any], err: errors.TetherError, index: int, attempt: int, delay: float
    ) -> None:
        """Journal the failed attempt, wait ``delay``, and check the boundary again."""
        self.budget.spend()
        await self._journal_attempt(err, index, attempt, delay)
        self.emitter.emit(
            events.STEP_RETRYING,
            step=index,
            kind=spec.kind,
            step_name=spec.name,
            attempt=attempt,
            error=err.to_dict(),
            delay=delay,
        )
        self.at_phase("backoff")
        await self.settings.sleep(delay)
        self._boundary()

    async def _give_up(
        self,
        spec: StepSpec[T],
        fp: str,
        err: errors.TetherError,
        exc: Exception,
        decision: retry.GiveUp,
        index: int,
        attempt: int,
        started: float,
    ) -> T:
        """Commit the step as failed; return ``spec.on_failure``'s value or raise."""
        final = self._final_error(err, decision, attempt, spec.policy, index, spec.kind, spec.name)
        self.emitter.emit(
            events.STEP_FAILED,
            step=index,
            kind=spec.kind,
            step_name=spec.name,
            attempt=attempt,
            error=final.to_dict(),
        )
        self.at_phase("between")
        # A spent budget ends the task: it is never handed back as a value
        # (a tool message the model would read and carry on after).
        if spec.on_failure is not None and not isinstance(final, errors.BudgetExhausted):
            value = spec.on_failure(final)
            await self._commit(index, spec, fp, "failed", value, final, attempt, started)
            return value
        await self._commit(index, spec, fp, "failed", None, final, attempt, started)
        raise final from exc

    async def _complete(
        self, spec: StepSpec[T], fp: str, value: T, index: int, attempt: int, started: float
    ) -> T:
        """Commit the step's value, then say it completed."""
        await self._commit(index, spec, fp, "completed", value, None, attempt, started)
        extra = spec.completed_data(value) if spec.completed_data is not None else {}
        self.emitter.emit(
            events.STEP_COMPLETED,
            step=index,
            kind=spec.kind,
            step_name=spec.name,
            attempt=attempt,
            duration=types.now() - started,
            **extra,
        )
        self.at_phase("between")
        return value

    def _replay(self, record: types.StepRecord, index: int, spec: StepSpec[T], fp: str) -> T:
        kind, name = spec.kind, spec.name
        if record.kind != kind or record.name != name or record.fingerprint != fp:
            what = (
                f"the journal recorded a {record.kind} step {record.name!r}, the code now asks "
                f"for a {kind} step {name!r}"
                if (record.kind, record.name) != (kind, name)
                else f"{kind} step {name!r} was recorded with other inputs (fingerprint "
                f"{record.fingerprint[:12]}, now {fp[:12]} for {describe(spec.inputs)})"
            )
            raise errors.NonDeterminismError(
                f"replay diverged at step {index}: {what}. Check that the workflow is "
                "deterministic, or version the agent so old tasks finish on the recorded path",
                **self._ids(index),
            )
        self.replayed += 1
        self.steps_done = max(self.steps_done, index + 1)
        self._appended[index] = record.message_seqs
        self.emitter.emit(events.STEP_REPLAYED, step=index, kind=kind, step_name=name)
        self.at_phase("between")
        state = record.output
        if record.status == "failed" and (spec.on_failure is None or state is None):
            raise errors.error_from_dict(record.error or {}).with_ids(**self._ids(index))
        codec = spec.codec
        value: T = codec.decode(state)
        new_state = codec.session_state(value)
        if new_state is not None:
            self.session_state = new_state
        return value

    async def _journal_attempt(
        self, err: errors.TetherError, index: int, attempt: int, delay: float
    ) -> None:
        """Record one failed try of a step (fenced) before it is tried again."""
        await self._store.record_attempt(
            self._lease.lease,
            types.StepAttempt(
                task_id=self.task.id,
                index=index,
                attempt=attempt,
                error=errors.error_record(err),
                delay=delay,
                worker=self.instance_id,
                at=types.now(),
            ),
        )

    async def _hand_over(
        self, err: errors.TetherError, index: int, kind: str, name: str, attempt: int
    ) -> None:
        """Journal the stuck attempt, then give the task up so a fresh run (on another
        worker, or a new run here) continues it; the stuck work is abandoned."""
        self.budget.spend()
        await self._journal_attempt(err, index, attempt, 0.0)
        raise errors.StepHandedOver(
            f"task {self.task.id}: {kind} step {name!r} (step {index}) is stuck; "
            "handing the task over",
            task=self.task.id,
        ) from err

    def _final_error(
        self,
        err: errors.TetherError,
        decision: retry.GiveUp,
        attempt: int,
        policy: retry.RetryPolicy,
        index: int,
        kind: str,
        name: str,
    ) -> errors.TetherError:
        """The error a step ends with when ``decide`` gives up on ``err`` (a new error:
        ``err`` keeps its own classification)."""
        if decision.reason == "permanent":
            return err
        if decision.reason == "budget":
            return errors.BudgetExhausted(
                f"the task's retry budget of {self.budget.total} retries is spent; {kind} step "
                f"{name!r} last failed with {err.error_class}: {err.detail}. Raise the "
                "budget (Agent(retry_budget=…)) or fix the cause, then resume the task",
                **self._ids(index),
            )
        tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        return err.given_up(
            f"gave up after {tries}, the most its retry policy allows: "
            f"max_attempts={policy.max_attempts}"
        )

    async def _guard(
        self,
        work: Awaitable[T],
        beat: Heartbeat,
        spec: StepSpec[Any],
        index: int,
    ) -> T:
        """Time a step out when it goes silent: ``spec.timeout`` until its first heartbeat,
        then ``spec.heartbeat_timeout`` (default ``timeout``) between heartbeats."""
        timeout, kind, name = spec.timeout, spec.kind, spec.name
        if timeout is None:
            return await work
        job = asyncio.ensure_future(work)
        silence_limit = spec.heartbeat_timeout or timeout
        stuck_after = self.settings.stuck_after
        flagged = False
        try:
            while True:
                limit = silence_limit if beat.beats else timeout
                now = time.monotonic()
                remaining = beat.last + limit - now
                wait = min(remaining, silence_limit)
                if not beat.beats and not flagged and stuck_after < limit:
                    # Silent from the start: no heartbeat timeout can tell, so a step
                    # running past ``stuck_after`` without one beat is reported stuck
                    # (it goes on until its timeout).
                    until = beat.started + stuck_after - now
                    if until <= 0:
                        flagged = True
                        self.emitter.emit(
                            events.STEP_STUCK,
                            step=index,
                            kind=kind,
                            step_name=name,
                            silent_for=now - beat.started,
                            never_beat=True,
                            stuck_after=stuck_after,
                        )
                    else:
                        wait = min(wait, until)
                if remaining <= 0:
                    job.cancel()
                    silent = time.monotonic() - beat.last
                    if beat.beats:
                        self.emitter.emit(
                            events.STEP_STUCK,
                            step=index,
                            kind=kind,
                            step_name=name,
                            silent_for=silent,
                            heartbeat_timeout=limit,
                        )
                        raise errors.StepStuck(
                            f"{kind} step {name!r} sent no heartbeat for {silent:.1f}s "
                            f"(heartbeat timeout {limit}s)",
                            **self._ids(index),
                        )
                    raise errors.ToolTimeout(
                        f"{kind} step {name!r} ran past its timeout of {limit}s; raise the "
                        "timeout or make the tool call ctx.heartbeat() while it works",
                        **self._ids(index),
                    )
                # wake at least every silence_limit: a first heartbeat shortens the limit
                done, _ = await asyncio.wait({job}, timeout=wait)
                if done:
                    return job.result()
        finally:
            if not job.done():
                job.cancel()

    def _boundary(self) -> None:
        """Between steps: stop here if the lease is gone or the task was cancelled."""
        if self._lease.lost:
            raise errors.LeaseLost(
                f"task {self.task.id}: this worker's lease was taken over; stopping",
                task=self.task.id,
            )
        if self._lease.cancel_requested:
            raise errors.TaskCancelled(
                f"task {self.task.id} was cancelled; stopping before step {self._index - 1}",
                task=self.task.id,
            )

    async def _commit(
        self,
        index: int,
        spec: StepSpec[Any],
        fp: str,
        status: types.StepStatus,
        value: Any,
        error: errors.TetherError | None,
        attempt: int,
        started: float,
    ) -> None:
        outcome = spec.codec
        output = outcome.encode(value) if value is not None else None
        usage = value.usage if isinstance(value, types.ModelResponse) else None
        messages = tuple(outcome.messages(value)) if value is not None else ()
        state = outcome.session_state(value) if value is not None else None
        record = types.StepRecord(
            task_id=self.task.id,
            index=index,
            kind=spec.kind,
            name=spec.name,
            fingerprint=fp,
            status=status,
            output=output,
            error=errors.error_record(error) if error is not None else None,
            attempts=attempt,
            started_at=started,
            finished_at=types.now(),
            worker=self.instance_id,
            usage=usage,
        )
        taken = self.emitter.take()
        try:
            result = await self._committer.commit(
                types.StepCommit(
                    lease=self._lease.lease,
                    step=record,
                    messages=messages,
                    session_state=state,
                    events=taken,
                    signal_seq=outcome.consumes(value) if value is not None else None,
                )
            )
        except errors.LeaseLost:
            self._lease.mark_lost()
            raise
        except BaseException:
            self.emitter.give_back(taken)
            raise
        self._appended[index] = result.message_seqs
        self.steps_done = max(self.steps_done, index + 1)
        if state is not None:
            self.session_state = state


class TaskContext:
    """The ``ctx`` a durable function receives: its ids and the journaled steps.

    Every ``await ctx.<step>(…)`` is looked up in the task's journal first: a recorded
    step returns its recorded output without running again. Not shared between tasks."""

    __slots__ = ("_run",)

    def __init__(self, run: TaskRun) -> None:
        self._run = run

    @property
    def task_id(self) -> str:
        return self._run.task.id

    @property
    def session_id(self) -> str:
        return self._run.task.session_id

    @property
    def tenant(self) -> str:
        return self._run.task.tenant

    @property
    def step_index(self) -> int:
        """The index the next step will get."""
        return self._run.step_index

    @property
    def replaying(self) -> bool:
        """Whether the next step is in the journal (it will replay, not run)."""
        return self._run.replaying

    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once as a journaled step; its result must be JSON."""
        return await self._run.step(name, fn, *args, **kwargs)

    async def call_model(
        self, model: Model, request: types.ModelRequest, *, name: str | None = None
    ) -> types.ModelResponse:
        """One journaled model call; its answer joins the session's messages. An answer
        cut off by its token limit is retried with a larger ``max_tokens``, then fails with
        ``OutputTruncated``: it is never returned as complete."""
        return await self._run.call_model(model, request, name=name)

    async def call_tool(
        self, tool: tools.Tool, arguments: dict[str, Any] | str | None = None
    ) -> Any:
        """Run a tool once as a journaled step and return what it returned."""
        return await self._run.call_tool(tool, arguments)

    async def sleep(self, seconds: float) -> None:
        """A journaled pause: on replay it does not wait again. Longer than the settings'
        ``durable_sleep_after`` it holds no lease nor worker slot: the task is ``waiting``
        and any worker resumes it when it is due."""
        await self._run.sleep(seconds)

    async def sleep_until(self, when: datetime.datetime) -> None:
        """A journaled pause until ``when``, durable like a long ``sleep``."""
        await self._run.sleep_until(when)

    async def wait_for_signal(
        self, name: str, *, timeout: float | None = None, default: Any = waits.NO_DEFAULT
    ) -> Any:
        """Wait for the signal ``name`` (``tether signal``, ``POST …/signals/{name}``,
        ``runtime.signal``) and return its JSON data; one journaled step, so replay
        returns the same data. A signal sent earlier is kept and consumed here; each
        signal is consumed once. While it waits the task is ``waiting``: it holds no
        lease and no worker slot. After ``timeout`` seconds without the signal it
        raises ``SignalTimeout`` (not retried), or returns ``default`` when given."""
        return await self._run.wait_for_signal(name, timeout=timeout, default=default)


def task_run(ctx: TaskContext) -> TaskRun:
    """The run under a workflow's ``ctx``: for tether's own layers (the agent loop, the
    integrations), which need more than the user's surface."""
    return ctx._run


def _no_state(value: Any) -> dict[str, Any] | None:
    return None


def _grown_max_tokens(current: int, model: Model, response: types.ModelResponse) -> int | None:
    """Twice ``current`` max_tokens, within what the model's window leaves after the prompt."""
    prompt = response.usage.prompt_tokens if response.usage else 0
    ceiling = model.context_window - prompt
    grown = min(current * 2, ceiling)
    return grown if grown > current else None


def _model_completed_data(response: types.ModelResponse, model: Model) -> dict[str, Any]:
    usage = response.usage
    return {
        "model": model.name,
        "finish_reason": response.finish_reason,
        "usage": usage.to_dict() if usage else None,
        "context_tokens": usage.prompt_tokens if usage else None,
        "context_limit": model.context_window,
    }


def _require_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise errors.WorkflowFailed(
            f"{what} returned {type(value).__name__}, which cannot be journaled as JSON; "
            "return str, numbers, lists or dicts"
        ) from exc
