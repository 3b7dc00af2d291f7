"""A step's messages are stored once (payload version 2): the journal refers to them.

A model step's output holds the assistant message its commit appends, a tool-call
step's output is its tool message; the step row stores a reference instead of the copy
(``tether.store.step_payload``), and ``load_journal`` gives the output back as recorded.
Rows written by tether 0.1.0 (payload version 1, full copies) read back unchanged.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest
from contract_support import StoreCase, claim, submit

from tether import errors, types
from tether.store import Store, step_payload


def _text(n: int, seed: int) -> str:
    """``n`` characters that no engine compresses (a different text for each seed)."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _step(
    task_id: str, index: int, output: Any, kind: types.StepKind = "model"
) -> types.StepRecord:
    return types.StepRecord(
        task_id=task_id,
        index=index,
        kind=kind,
        name="chat" if kind == "model" else "record",
        fingerprint=f"fp-{index}",
        status="completed",
        output=output,
        started_at=1.0,
        finished_at=2.0,
        worker="w1",
        usage=types.Usage(12, 5) if kind == "model" else None,
    )


async def _commit(
    s: Store, lease: types.Lease, index: int, output: Any, *messages: types.Message
) -> tuple[int, ...]:
    kind: types.StepKind = "tool" if messages and messages[0].role == "tool" else "model"
    [result] = await s.commit_steps(
        [
            types.StepCommit(
                lease=lease, step=_step(lease.task_id, index, output, kind), messages=messages
            )
        ]
    )
    assert isinstance(result, types.CommitResult), result
    return result.message_seqs


def _stored(store: StoreCase, task_id: str, index: int) -> tuple[Any, int]:
    [(output, version)] = store.raw(
        "SELECT output, payload_version FROM steps WHERE task_id = ? AND idx = ?", (task_id, index)
    )
    return (json.loads(output) if output is not None else None), int(version)


def _as_release_0_1_0(store: StoreCase, task_id: str, index: int, output: Any) -> None:
    """Rewrite the step row as tether 0.1.0 stored it: version 1, the output in full."""
    store.raw(
        "UPDATE steps SET output = ?, payload_version = 1 WHERE task_id = ? AND idx = ?",
        (json.dumps(output), task_id, index),
    )


def test_a_model_step_stores_its_message_once(store: StoreCase) -> None:
    content = _text(500, seed=1)
    call = types.ToolCall(id="call-1", name="record", arguments='{"n": 1}')
    reply = types.Message(role="assistant", content=content, tool_calls=(call,))
    response = types.ModelResponse(reply, "tool_calls", types.Usage(12, 5), "stand-in")
    ids: dict[str, str] = {}
    sizes: dict[str, int] = {}

    async def write(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        ids["task"] = task.id
        assert await _commit(s, got.lease, 0, response.to_dict(), reply) == (2,)
        [step] = await s.load_journal(task.id)
        assert step.output == response.to_dict()
        assert list(step.output) == list(response.to_dict())  # the fields keep their order
        assert types.ModelResponse.from_dict(step.output) == response
        assert step.message_seqs == (2,) and step.usage == types.Usage(12, 5)
        sizes["v2"] = await s.step_storage_bytes(task.id, 0)

    store.run(write)
    stored, version = _stored(store, ids["task"], 0)
    assert version == types.PAYLOAD_VERSION == 2
    assert stored == {
        "message": {step_payload.REFERENCE: 0},
        "finish_reason": "tool_calls",
        "usage": {"prompt_tokens": 12, "completion_tokens": 5},
        "model": "stand-in",
    }
    _as_release_0_1_0(store, ids["task"], 0, response.to_dict())

    async def reread(s: Store) -> None:
        [step] = await s.load_journal(ids["task"])
        assert step.output == response.to_dict()
        sizes["v1"] = await s.step_storage_bytes(ids["task"], 0)

    store.run(reread)
    saved = sizes["v1"] - sizes["v2"]
    message_bytes = len(json.dumps(reply.to_dict(), separators=(",", ":")))
    assert message_bytes * 0.9 <= saved <= message_bytes * 1.1, (sizes, message_bytes)


def test_a_tool_call_step_stores_its_tool_message_once(store: StoreCase) -> None:
    content = _text(500, seed=2)
    answer = types.Message(role="tool", content=content, tool_call_id="call-1", name="record")
    ids: dict[str, str] = {}

    async def write(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        ids["task"] = task.id
        await _commit(s, got.lease, 0, answer.to_dict(), answer)
        [step] = await s.load_journal(task.id)
        assert step.output == answer.to_dict()
        assert types.Message.from_dict(step.output) == answer
        history = await s.list_messages(task.session_id)
        assert [m.message for m in history[1:]] == [answer]

    store.run(write)
    stored, _ = _stored(store, ids["task"], 0)
    assert stored == {step_payload.REFERENCE: 0}
    [(text,)] = store.raw("SELECT output FROM steps WHERE task_id = ?", (ids["task"],))
    assert content not in text


def test_outputs_that_look_like_references_read_back_as_written(store: StoreCase) -> None:
    first = types.Message(role="assistant", content="first")
    second = types.Message(role="assistant", content="second")
    outputs: list[Any] = [
        {"$message": 0},
        {"$literal": {"x": 1}},
        {"$message": 0, "other": 1},
        {"message": {"$message": 0}, "k": 1},
        {"message": {"$literal": 3}},
        {"message": "not a message of this step"},
        {"message": second.to_dict(), "finish_reason": "stop"},  # the second message
        second.to_dict(),
        [first.to_dict()],
        "first",
        0,
        None,
    ]
    ids: dict[str, str] = {}

    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        ids["task"] = task.id
        for index, output in enumerate(outputs):
            await _commit(s, got.lease, index, output, first, second)
        journal = await s.load_journal(task.id)
        assert [st.output for st in journal] == outputs
        assert [st.message_seqs for st in journal] == [
            (2 + 2 * i, 3 + 2 * i) for i in range(len(outputs))
        ]

    store.run(body)
    assert _stored(store, ids["task"], 6)[0]["message"] == {step_payload.REFERENCE: 1}
    assert _stored(store, ids["task"], 7)[0] == {step_payload.REFERENCE: 1}
    assert _stored(store, ids["task"], 0)[0] == {step_payload.LITERAL: {"$message": 0}}


def test_release_0_1_0_rows_read_back_unchanged_beside_new_ones(store: StoreCase) -> None:
    """A journal half written by 0.1.0 (full copies, version 1) and finished by this
    release reads back as recorded, including a version 1 output shaped like a reference."""
    replies = [types.Message(role="assistant", content=_text(100, seed=i)) for i in range(6)]
    outputs: list[Any] = [
        types.ModelResponse(r, "stop", types.Usage(1, 1), "m").to_dict() for r in replies
    ]
    outputs[1] = {"$message": 0}  # a custom step's output in 0.1.0, not a reference
    outputs[2] = {"message": {"$message": 0}, "finish_reason": "stop"}
    ids: dict[str, str] = {}

    async def write(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        ids["task"] = task.id
        for index, (output, reply) in enumerate(zip(outputs, replies, strict=True)):
            await _commit(s, got.lease, index, output, reply)

    store.run(write)
    for index in range(3):
        _as_release_0_1_0(store, ids["task"], index, outputs[index])
    versions = store.raw(
        "SELECT idx, payload_version FROM steps WHERE task_id = ? ORDER BY idx", (ids["task"],)
    )
    assert [v for _, v in versions] == [1, 1, 1, 2, 2, 2]

    async def read(s: Store) -> None:
        journal = await s.load_journal(ids["task"])
        assert [st.output for st in journal] == outputs
        assert [st.message_seqs for st in journal] == [(i + 2,) for i in range(6)]

    store.run(read)


def test_a_reference_to_a_missing_message_is_store_corrupt(store: StoreCase) -> None:
    reply = types.Message(role="assistant", content="hi")
    ids: dict[str, str] = {}

    async def write(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        ids["task"] = task.id
        await _commit(s, got.lease, 0, {"message": reply.to_dict()}, reply)

    store.run(write)
    store.raw("UPDATE steps SET message_seqs = ? WHERE task_id = ?", ("[99]", ids["task"]))

    async def read(s: Store) -> None:
        with pytest.raises(errors.StoreCorrupt) as info:
            await s.load_journal(ids["task"])
        assert f"(task_id {ids['task']}, idx 0)" in str(info.value)
        assert "seq 99" in str(info.value) and "restore the session" in str(info.value)

    store.run(read)
