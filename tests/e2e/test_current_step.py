"""`tether.current_step()`: the running step's ToolContext for code tether was not
able to hand a ``ctx`` (a framework's tool), and a clear error outside a step."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether import Runtime, ToolContext, errors
from tether.execution.context import TaskContext


def test_outside_a_step_it_says_so() -> None:
    with pytest.raises(errors.NotInStep, match="outside a running step"):
        tether.current_step()


def test_inside_steps_it_names_each_step_and_its_key(tmp_path: Path) -> None:
    seen: list[ToolContext] = []

    def effect() -> str:
        ctx = tether.current_step()
        ctx.heartbeat()
        seen.append(ctx)
        return ctx.idempotency_key

    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:

        @runtime.workflow
        async def two_effects(ctx: TaskContext, input: str) -> list[str]:
            first = await ctx.step("first", effect)
            second = await ctx.step("second", effect)
            return [first, second]

        task = runtime.submit("two_effects", "go")
        result = runtime.run(task.id)

    assert result.output == [f"{task.id}:0", f"{task.id}:1"]
    assert [(c.task_id, c.session_id, c.tenant, c.attempt) for c in seen] == [
        (task.id, task.session_id, "default", 1)
    ] * 2
    with pytest.raises(errors.NotInStep):
        tether.current_step()


def test_registering_an_unknown_kind_of_object_is_refused(tmp_path: Path) -> None:
    with (
        Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime,
        pytest.raises(errors.InvalidInput, match=r"cannot register a builtins\.dict"),
    ):
        runtime.register({"name": "x"})
