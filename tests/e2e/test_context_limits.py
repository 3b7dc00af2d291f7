"""The edges of the window: the fail strategy, a server-side overflow the count did not
foresee (one compaction and a retry, then a visible failure), a truncated summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import context_support as support

from tether import ContextPolicy, types
from tether.context.counting import structured_count
from tether.observe import events

WINDOW = 2048


class FirstCharsCounter:
    """Counts only each text's first 400 characters: it undercounts long messages, as
    a counter for the wrong tokenizer might."""

    name = "first-400-chars"

    def count(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        return structured_count(lambda t: (min(len(t), 400) + 3) // 4, messages, tools)


def test_fail_strategy_raises_before_sending_too_much(tmp_path: Path) -> None:
    run = support.converse(
        str(tmp_path / "t.db"), ContextPolicy(strategy="fail"), 200, window=WINDOW,
        stop_on_failure=True,
    )  # fmt: skip
    *ok, failed = run.results
    assert ok and all(r.status == "completed" for r in ok)
    assert failed.status == "failed"
    # ContextBudgetExceeded: the agent's refusal (type "agent"), named ContextOverflow
    assert (failed.error["type"], failed.error["error_class"]) == ("agent", "ContextOverflow")
    assert "strategy is 'fail'" in failed.error["message"]
    assert [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)] == []
    assert run.seen.named(events.CONTEXT_PRESSURE)
    assert not run.seen.named(events.CONTEXT_COMPACTED)
    assert run.session.state["folded_upto"] == 0


def test_server_overflow_gets_one_compaction_and_a_retry(tmp_path: Path) -> None:
    long_turn = "turn 11 " + "lorem ipsum dolor sit amet " * 150  # ~1000 tokens, counted ~100
    inputs = [f"turn {n}" for n in range(1, 11)] + [long_turn, "turn 12"]
    run = support.converse(
        str(tmp_path / "t.db"),
        ContextPolicy(strategy="summarize", counter=FirstCharsCounter()),
        0,
        window=WINDOW,
        inputs=inputs,
    )
    assert [r.status for r in run.results] == ["completed"] * len(inputs)
    refused = [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)]
    assert len(refused) == 1
    failed = run.seen.named(events.STEP_FAILED)
    assert [e.data["error"]["error_class"] for e in failed] == ["ContextOverflow"]
    after = [e for e in run.seen.named(events.CONTEXT_COMPACTED) if e.at >= failed[0].at]
    assert after
    # the overflow taught the session to count higher
    assert run.session.state["calibration"]["ratio"] > 1.25


def test_server_overflow_twice_fails_visibly(tmp_path: Path) -> None:
    huge = "turn 3 " + "lorem ipsum dolor sit amet " * 330  # beyond the window on its own
    run = support.converse(
        str(tmp_path / "t.db"),
        ContextPolicy(strategy="summarize", counter=FirstCharsCounter()),
        0,
        window=WINDOW,
        inputs=["turn 1", "turn 2", huge],
    )
    assert [r.status for r in run.results] == ["completed", "completed", "failed"]
    error = run.results[-1].error
    assert (error["type"], error["error_class"]) == ("model", "ContextOverflow")
    refused = [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)]
    assert len(refused) == 2
    assert refused[-1] == len(run.bodies) - 1


def test_a_truncated_summary_is_never_taken_as_complete(tmp_path: Path) -> None:
    run = support.converse(
        str(tmp_path / "t.db"),
        ContextPolicy(strategy="summarize"),
        60,
        window=WINDOW,
        stop_on_failure=True,
        truncate_summaries=True,
    )
    failed = run.results[-1]
    assert failed.status == "failed"
    assert failed.error["error_class"] == "OutputTruncated"
    assert "summary" in failed.error["message"]
    assert run.session.state.get("summary") is None
    assert [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)] == []
