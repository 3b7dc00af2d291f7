"""Agents the HTTP service tests serve: a chatty agent, a multi-step workflow, a slow one."""

from __future__ import annotations

import asyncio
import threading

from tether import Agent, Runtime, ScriptedModel, types
from tether.execution.context import TaskContext
from tether.models import streaming

runtime = Runtime()

runtime.register(Agent("echo", ScriptedModel("hello from echo"), instructions="Be brief."))


async def _pause(i: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return i


@runtime.workflow
async def steps(ctx: TaskContext, input: str) -> list[int]:
    """``input`` is ``"N"`` or ``"N:SECONDS"``: N journaled steps of SECONDS each."""
    count, _, pause = input.partition(":")
    done = []
    for i in range(int(count)):
        done.append(await ctx.step(f"s{i}", _pause, i, float(pause or 0.1)))
    return done


@runtime.workflow
async def slow(ctx: TaskContext, input: str) -> str:
    """One long step (``input`` seconds), then a short one."""
    await ctx.step("long", _pause, 0, float(input))
    await ctx.step("short", _pause, 1, 0.01)
    return "done"


STREAM_RELEASE = threading.Event()
"""Set by the test once it has seen the first streamed piece on the task's SSE stream."""


class HeldStream:
    """A model that streams its answer in pieces (``tether.models.streaming``), holding
    after the first until ``STREAM_RELEASE`` is set, as a slow generation would."""

    name = "held-stream"
    context_window = 4096
    max_output_tokens = 64

    async def complete(self, request: types.ModelRequest) -> types.ModelResponse:
        pieces = ["streamed ", "answer ", "in ", "pieces"]
        streaming.emit(pieces[0])
        for _ in range(600):
            if STREAM_RELEASE.is_set():
                break
            await asyncio.sleep(0.05)
        for piece in pieces[1:]:
            streaming.emit(piece)
        text = "".join(pieces)
        return types.ModelResponse(types.Message(role="assistant", content=text), model=self.name)

    async def aclose(self) -> None:
        return None


runtime.register(Agent("held", HeldStream()))
