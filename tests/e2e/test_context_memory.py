"""200 turns under the memory strategy: old messages move to the session's vector
memory and the most relevant come back each step, within the server's real window."""

from __future__ import annotations

from pathlib import Path

import context_support as support

from tether import ContextPolicy
from tether.observe import events

WINDOW = 2048


def test_200_turns_memory(tmp_path: Path) -> None:
    run = support.converse(
        str(tmp_path / "t.db"), ContextPolicy(strategy="memory", recall_k=3), 200, window=WINDOW
    )
    assert [r.status for r in run.results] == ["completed"] * 200
    assert [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)] == []
    assert all(support.orphans(b) == [] for b in run.bodies)

    ledger = run.session.state
    folded = ledger["folded_upto"]
    assert folded > 100
    assert ledger["summary"] is None
    # every folded message is in memory, one item each, and the ledger says so
    assert [m.seq for m in run.memory] == list(range(1, folded + 1))
    assert ledger["memory"]["sources"] == [[1, folded]]
    assert {m.task_id for m in run.memory} <= {r.id for r in run.results}

    last = run.bodies[-1]["messages"]
    assert last[1]["role"] == "system"
    assert last[1]["content"].startswith(f"{folded} earlier messages were moved to memory")
    assert "[message " in last[1]["content"]

    compacted = run.seen.named(events.CONTEXT_COMPACTED)
    assert compacted and {e.data["strategy"] for e in compacted} == {"memory"}
    moved = [seq for e in compacted for seq in e.data["messages"]]
    assert moved == list(range(1, folded + 1))
    assert run.seen.named(events.CONTEXT_PRESSURE)
