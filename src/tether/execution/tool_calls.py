"""The tool calls of one model turn, run concurrently, each its own journaled step.

Every call gets its step index before any starts (``TaskRun.reserve_steps``), in
the model's order, so its idempotency key (``task_id:index``) is the same on every run
whatever order the calls finish in. A call's step commits as soon as it finishes, so a
crash re-runs only the calls that had not finished. Its tool message joins the session
in the model's order all the same: a commit appends the messages of the longest run of
finished calls that starts at the first call not yet appended (its own among them),
and a call finishing ahead of an earlier one commits without a message, its message
kept in its output until the earlier one's commit appends both. So the session always
holds a prefix of the turn's results, in order, and a replay returns exactly what the
first run did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from tether import errors, types
from tether.execution.context import TaskRun
from tether.tools import Tool


class _Order:
    """Which finished results the next commit appends, so they join in the model's order."""

    def __init__(self, n: int) -> None:
        self.results: list[types.Message | None] = [None] * n
        self.appended = 0
        """How many results, from the first, are in the session already."""

    def appends(self, position: int) -> Callable[[types.Message], tuple[types.Message, ...]]:
        def messages(message: types.Message) -> tuple[types.Message, ...]:
            self.results[position] = message
            out: list[types.Message] = []
            while self.appended < len(self.results):
                found = self.results[self.appended]
                if found is None:
                    break
                out.append(found)
                self.appended += 1
            return tuple(out)

        return messages


async def run_tool_calls(
    ctx: TaskRun,
    tools: Mapping[str, Tool],
    calls: Sequence[types.ToolCall],
    *,
    concurrent: bool = True,
) -> list[tuple[int, types.Message]]:
    """Answer ``calls`` (one turn's, in the model's order) with their tool messages;
    returns each message with its session seq, in the model's order. ``concurrent``
    False runs them one after another (the steps are the same)."""
    if not concurrent or len(calls) < 2:
        out: list[tuple[int, types.Message]] = []
        for call in calls:
            index = ctx.step_index
            message = await ctx.run_tool_call(tools.get(call.name), call)
            out.append((ctx.appended_by(index)[-1], message))
        return out

    first = ctx.reserve_steps(len(calls))
    order = _Order(len(calls))
    seqs: list[int] = []
    messages: list[types.Message | None] = [None] * len(calls)

    async def one(position: int) -> None:
        call = calls[position]
        message = await ctx.run_tool_call(
            tools.get(call.name),
            call,
            index=first + position,
            appends=order.appends(position),
        )
        seqs.extend(ctx.appended_by(first + position))
        messages[position] = message

    # Recorded calls replay first, in order: they tell how many results are appended.
    pending: list[int] = []
    for position in range(len(calls)):
        if ctx.recorded(first + position):
            await one(position)
            order.results[position] = messages[position]
            order.appended += len(ctx.appended_by(first + position))
        else:
            pending.append(position)
    await _all_or_none([one(p) for p in pending])

    if len(seqs) != len(calls) or any(m is None for m in messages):
        raise errors.WorkflowFailed(
            f"task {ctx.task_id}: the {len(calls)} tool calls of steps {first}.."
            f"{first + len(calls) - 1} left {len(seqs)} session messages; the journal does "
            "not match the session (was the session edited?)",
            task=ctx.task_id,
        )
    return [(seq, m) for seq, m in zip(sorted(seqs), messages, strict=True) if m is not None]


async def _all_or_none(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines concurrently; on the first failure cancel the rest, wait for
    them, and raise it (a cancelled call has committed nothing and re-runs)."""
    jobs = [asyncio.ensure_future(w) for w in work]
    if not jobs:
        return
    try:
        done, running = await asyncio.wait(jobs, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        raise
    failures = [exc for j in jobs if j in done and not j.cancelled() and (exc := j.exception())]
    if failures:
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise failures[0]
