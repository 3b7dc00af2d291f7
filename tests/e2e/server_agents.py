"""Agents the HTTP service tests serve: a chatty agent, a multi-step workflow, a slow one."""

from __future__ import annotations

import asyncio

from tether import Agent, Runtime, ScriptedModel
from tether.execution.context import TaskContext

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
