"""Payload version 2 (a step refers to its messages) reads every release's rows.

A fixture written with payload version 1 (0.1.0.dev1) holds a full copy of the message
in each model and tool-call step; this release reads them through the shipped step
upcaster, unchanged and without rewriting them. A version 2 fixture (0.1.0) holds a
reference instead, and reads back with the message filled in. Both engines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from release_fixtures import Fixture, cases, restore
from upgrade_support import raw, with_store

from tether import types
from tether.store import Store


@pytest.mark.parametrize(("fixture", "engine"), cases())
def test_release_steps_read_back_with_their_full_messages(
    fixture: Fixture, engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = restore(fixture, engine, tmp_path, request)
    described = fixture.engine(engine)
    before = raw(url, "SELECT task_id, idx, output, payload_version FROM steps ORDER BY 1, 2")
    version = fixture.manifest["payload_version"]
    assert before and {int(r[3]) for r in before} == {version}
    reference = {"$message": 0}

    async def check(store: Store) -> int:
        copies = 0
        for recorded in described["tasks"]:
            task = await store.get_task(recorded["id"])
            history = {
                m.seq: m.message.to_dict() for m in await store.list_messages(task.session_id)
            }
            journal = await store.load_journal(task.id)
            assert len(journal) == recorded["steps"]
            for step in journal:
                stored = json.loads(
                    next(r[2] for r in before if (r[0], r[1]) == (task.id, step.index))
                )
                if step.kind == "model" and step.status == "completed":
                    assert step.output["message"] == history[step.message_seqs[0]]
                    if version == 1:
                        assert step.output == stored
                        assert types.ModelResponse.from_dict(step.output).to_dict() == stored
                    else:
                        assert stored["message"] == reference
                        assert {**step.output, "message": reference} == stored
                    copies += 1
                elif step.kind == "tool" and step.message_seqs:
                    assert step.output == history[step.message_seqs[0]]
                    assert stored == (step.output if version == 1 else reference)
                    copies += 1
                else:
                    assert step.output == stored
        return copies

    assert with_store(url, check) > 0
    after = raw(url, "SELECT task_id, idx, output, payload_version FROM steps ORDER BY 1, 2")
    assert after == before  # read, never rewritten
