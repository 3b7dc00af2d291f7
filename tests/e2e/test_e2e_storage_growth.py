"""A 500-step task: the bytes stored per step do not grow with the session's length."""

from __future__ import annotations

from pathlib import Path

from tether import Agent, Runtime, ScriptedModel, tool


@tool
def note(text: str) -> str:
    """Keep a note."""
    return "ok: " + text


def test_step_500_stores_as_much_as_step_5(tmp_path: Path) -> None:
    payload = "x" * 500
    # 500 steps of 500 characters take ~75k tokens: a window that holds them all
    model = ScriptedModel(
        [ScriptedModel.call("note", text=payload)] * 250 + ["done"], context_window=200_000
    )
    agent = Agent("writer", model, tools=[note], max_steps=300)
    with Runtime(f"sqlite:///{tmp_path / 't.db'}", worker_id="t:run") as rt:
        rt.register(agent)
        task = rt.submit("writer", "go")
        result = rt.run(task.id)
        assert result.status == "completed"
        sizes = {
            i: rt.store_call(lambda s, i=i: s.step_storage_bytes(task.id, i))  # type: ignore[misc]
            for i in (4, 5, 498, 499)
        }
        journal = rt.store_call(lambda s: s.load_journal(task.id))
    assert len(journal) == 501
    for early, late in ((4, 498), (5, 499)):
        assert sizes[early] > 500
        assert abs(sizes[late] - sizes[early]) <= 0.10 * sizes[early], sizes
