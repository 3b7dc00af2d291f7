"""A compiled LangGraph graph run as a tether task: one writer per thread.

The task runs the graph on the thread whose id is the tether session id, with a
``TetherSaver`` on the worker's store whose every write carries the task's lease. A
worker that lost its lease (it was paused past its expiry and another took the task
over) has its next checkpoint write refused: ``LeaseLost`` unwinds the graph and a
``checkpoint.refused`` event is stored (``what``: ``checkpoint``, ``writes`` or the
node's ``step`` row, whichever write came first); the thread is never forked.

Resuming: if the thread's newest checkpoint was written by this task, an earlier run
of it got that far (and crashed, or was drained), so the graph continues from that
checkpoint with no new input: finished nodes are not run again, and the writes of
nodes that finished in the interrupted superstep are kept. Otherwise the task's
input starts a new turn on the thread.

Each node execution is a step: ``step.started`` when LangGraph starts the node, a
journal row and ``step.completed`` (or ``step.failed``) when it ends, so the step
funnel metrics, spans and ``tether tasks show`` see the graph's nodes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP
from langgraph.pregel import Pregel

from tether import errors, retry, types
from tether.execution.context import TaskContext, TaskRun, task_run
from tether.execution.fingerprint import fingerprint
from tether.integrations.langgraph.portal import Portal
from tether.integrations.langgraph.saver import Fence, TetherSaver
from tether.observe import events

DEFAULT_NAME = "LangGraph"
TASK_KEY = "tether_task"
"""Configurable key (so, checkpoint metadata) naming the tether task that wrote a checkpoint."""


def workflow_for(obj: object) -> GraphWorkflow | None:
    """A compiled graph as a durable function; None for other LangGraph objects."""
    if not isinstance(obj, Pregel):
        return None
    if obj.name == DEFAULT_NAME:
        raise errors.InvalidInput(
            "this compiled LangGraph graph has LangGraph's default name 'LangGraph'; a graph "
            "registers under its name, so give it one: builder.compile(name='support-bot')"
        )
    return GraphWorkflow(obj)


@dataclass(slots=True)
class _Running:
    index: int
    name: str
    started: float


class GraphWorkflow:
    """``await workflow(ctx, input)``: run the graph ``wraps`` on the session's thread."""

    def __init__(self, graph: Pregel[Any, Any, Any, Any], *, retries: retry.Retries | None = None):
        self.wraps = graph
        self.name: str = graph.name
        self.retries = retries or retry.Retries()

    def __repr__(self) -> str:
        return f"GraphWorkflow({self.name!r})"

    async def __call__(self, context: TaskContext, input: str) -> Any:
        ctx = task_run(context)
        fence = Fence(lease=lambda: ctx.lease, refused=lambda exc, what: _refused(ctx, exc, what))
        saver = TetherSaver.for_task(
            ctx.store_url, ctx.checkpoints(), Portal(asyncio.get_running_loop()), fence
        )
        graph = self.wraps.copy(update={"checkpointer": saver})
        config: RunnableConfig = {
            "configurable": {"thread_id": ctx.session_id, TASK_KEY: ctx.task_id}
        }
        latest = await saver.aget_tuple({"configurable": {"thread_id": ctx.session_id}})
        resuming = latest is not None and latest.metadata.get(TASK_KEY) == ctx.task_id
        start = None if resuming else _graph_input(graph, input, ctx)
        steps = _Steps(ctx, ctx.steps_at_start)
        if resuming and latest is not None:
            # nodes that finished in the interrupted superstep: LangGraph announces them
            # again but applies their stored writes instead of running them
            steps.finished = {
                task_id
                for task_id, channel, _ in latest.pending_writes or []
                if channel not in WRITES_IDX_MAP
            }
        async for mode, chunk in graph.astream(
            start, config, stream_mode=["tasks"], durability="sync"
        ):
            if mode == "tasks" and isinstance(chunk, dict):
                await steps.on_task(chunk)
        state = await graph.aget_state(config)
        return _output(state.values, ctx)


class _Steps:
    """Node executions as steps: events, journal rows, in the order LangGraph ran them."""

    def __init__(self, ctx: TaskRun, first_index: int) -> None:
        self.ctx = ctx
        self.next_index = first_index
        self.running: dict[str, _Running] = {}
        self.finished: set[str] = set()

    async def on_task(self, chunk: dict[str, Any]) -> None:
        task_id, name = str(chunk.get("id")), str(chunk.get("name"))
        if "triggers" in chunk:  # a node starts
            if task_id in self.finished:
                return
            running = _Running(self.next_index, name, types.now())
            self.next_index += 1
            self.running[task_id] = running
            self.ctx.emitter.emit(
                events.STEP_STARTED,
                step=running.index,
                kind="custom",
                step_name=name,
                attempt=1,
                langgraph_task=task_id,
            )
            self.ctx.at_phase("step")
            return
        started = self.running.pop(task_id, None)
        if started is None:
            return
        failed = chunk.get("error") is not None
        error = (
            errors.WorkflowFailed(f"LangGraph node {name!r} raised: {chunk['error']}").with_ids(
                tenant=self.ctx.tenant,
                session=self.ctx.session_id,
                task=self.ctx.task_id,
                step=started.index,
            )
            if failed
            else None
        )
        if error is not None:
            self.ctx.emitter.emit(
                events.STEP_FAILED,
                step=started.index,
                kind="custom",
                step_name=name,
                attempt=1,
                error=error.to_dict(),
            )
        else:
            self.ctx.emitter.emit(
                events.STEP_COMPLETED,
                step=started.index,
                kind="custom",
                step_name=name,
                attempt=1,
                duration=types.now() - started.started,
            )
        self.ctx.at_phase("between")
        record = types.StepRecord(
            task_id=self.ctx.task_id,
            index=started.index,
            kind="custom",
            name=name,
            fingerprint=fingerprint("custom", name, {"langgraph_task": task_id}),
            status="failed" if failed else "completed",
            output={"langgraph_task": task_id},
            error=errors.error_record(error) if error is not None else None,
            started_at=started.started,
            finished_at=types.now(),
            worker=self.ctx.instance_id,
        )
        try:
            await self.ctx.commit_record(record)
        except errors.LeaseLost as refused:
            await _refused(self.ctx, refused, "step")
            raise


async def _refused(ctx: TaskRun, exc: errors.LeaseLost, what: str) -> None:
    """Record that this worker's checkpoint write was refused. The lease is gone, so
    the event is appended without it (and says which epoch was refused)."""
    ctx.emitter.emit(
        events.CHECKPOINT_REFUSED,
        what=what,
        epoch=ctx.lease.epoch,
        thread_id=ctx.session_id,
        error=str(exc),
    )
    await ctx.append_events_unfenced()


def _graph_input(graph: Pregel[Any, Any, Any, Any], text: str, ctx: TaskRun) -> Any:
    """The task's input as the graph's: a user message for a graph with ``messages``,
    else a JSON object of its state keys."""
    if "messages" in graph.channels:
        return {"messages": [HumanMessage(content=text)]}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise errors.InvalidInput(
            f"graph {graph.name!r} has no 'messages' channel, so its task input must be a "
            f"JSON object of its state keys ({', '.join(sorted(graph.channels)[:8])}); "
            f"got {text[:60]!r}",
            task=ctx.task_id,
        )
    return value


def _output(values: Any, ctx: TaskRun) -> Any:
    """The last message's text for a ``MessagesState``-style graph, else the state as JSON."""
    if isinstance(values, dict):
        messages = values.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], BaseMessage):
            return _text(messages[-1])
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise errors.WorkflowFailed(
            "the graph's final state cannot be stored as JSON; keep JSON values in its "
            "state, or a 'messages' list whose last message is the answer",
            task=ctx.task_id,
        ) from exc
    return values


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = [
        p if isinstance(p, str) else str(p.get("text", ""))
        for p in content
        if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")
    ]
    return "".join(parts)
