"""Payload version 2's step outputs: compacted on write, expanded on read, version 1 upcast."""

from __future__ import annotations

from typing import Any

import pytest

from tether import errors, types
from tether.store import payloads, step_payload

REPLY = types.Message(role="assistant", content="the answer").to_dict()
TOOL = types.Message(role="tool", content="recorded 1", tool_call_id="c1", name="record").to_dict()
MESSAGES = [REPLY, TOOL]
SEQS = (7, 8)
BY_SEQ = {7: REPLY, 8: TOOL}


def _round_trip(output: Any) -> Any:
    stored = step_payload.compact(output, MESSAGES)
    refs = step_payload.referenced(stored, SEQS, row="r")
    assert set(refs) <= set(SEQS)
    return step_payload.expand(stored, SEQS, {s: BY_SEQ[s] for s in refs}, row="r")


def test_a_model_output_keeps_its_fields_in_order_and_refers_to_its_message() -> None:
    output = {"message": REPLY, "finish_reason": "stop", "usage": None, "model": "m"}
    stored = step_payload.compact(output, MESSAGES)
    assert stored == {
        "message": {"$message": 0},
        "finish_reason": "stop",
        "usage": None,
        "model": "m",
    }
    assert step_payload.referenced(stored, SEQS, row="r") == [7]
    back = _round_trip(output)
    assert back == output and list(back) == list(output)


def test_a_tool_output_is_a_reference_to_its_tool_message() -> None:
    assert step_payload.compact(TOOL, MESSAGES) == {"$message": 1}
    assert step_payload.referenced({"$message": 1}, SEQS, row="r") == [8]
    assert _round_trip(TOOL) == TOOL


@pytest.mark.parametrize(
    "output",
    [
        {"$message": 0},
        {"$message": "x"},
        {"$literal": 1},
        {"$literal": {"$message": 0}},
        {"message": {"$message": 1}, "k": 2},
        {"message": {"$literal": 1}},
        {"message": {"role": "assistant", "content": "other"}},
        {"$message": 0, "and": "more"},
        [REPLY],
        "text",
        3,
        True,
        None,
    ],
)
def test_any_other_output_reads_back_as_written(output: Any) -> None:
    assert _round_trip(output) == output
    stored = step_payload.compact(output, [])
    assert step_payload.referenced(stored, (), row="r") == []
    assert step_payload.expand(stored, (), {}, row="r") == output


def test_only_outputs_that_would_be_misread_are_escaped() -> None:
    assert step_payload.compact({"$message": 0}, []) == {"$literal": {"$message": 0}}
    assert step_payload.compact({"message": {"$message": 0}}, []) == {
        "$literal": {"message": {"$message": 0}}
    }
    assert step_payload.compact({"a": 1}, []) == {"a": 1}
    assert step_payload.compact({"message": {"$literal": 1}}, []) == {"message": {"$literal": 1}}


def test_version_1_step_payloads_upcast_to_the_same_output() -> None:
    for output in ({"message": REPLY, "finish_reason": "stop"}, TOOL, {"$message": 0}, None):
        v1 = {"output": output, "error": None, "usage": None, "message_seqs": [7]}
        v2 = payloads.REGISTRY.upcast("step", 1, v1, table="steps", row="r")
        assert {k: v for k, v in v2.items() if k != "output"} == {
            k: v for k, v in v1.items() if k != "output"
        }
        assert step_payload.referenced(v2["output"], (7,), row="r") == []
        assert step_payload.expand(v2["output"], (7,), {}, row="r") == output


def test_messages_and_events_of_version_1_are_read_as_they_are() -> None:
    assert payloads.REGISTRY.current == types.PAYLOAD_VERSION == 2
    assert payloads.REGISTRY.upcast("message", 1, TOOL, table="messages", row="r") == TOOL
    assert payloads.REGISTRY.upcast("event", 1, {"i": 1}, table="events", row="r") == {"i": 1}


def test_a_dangling_reference_is_store_corrupt_naming_the_row() -> None:
    with pytest.raises(errors.StoreCorrupt, match=r"row \(task_id t, idx 3\).*message 2 of 1"):
        step_payload.referenced({"$message": 2}, (7,), row="(task_id t, idx 3)")
    with pytest.raises(errors.StoreCorrupt, match="seq 7, which is missing"):
        step_payload.expand({"message": {"$message": 0}}, (7,), {}, row="(task_id t, idx 3)")
