"""A step's output stored without the messages it appended (payload version 2).

A model step's output is ``ModelResponse.to_dict()``, whose ``message`` is the assistant
message the same commit appends to the session; a tool step answering a model's tool
call has the tool message itself as its output. Version 1 stored those messages twice,
in ``messages`` and in the step's ``output`` column. Version 2 stores them once: in the
``output`` column a copy of a message the commit appends is replaced by a reference
``{"$message": i}``, the message at ``message_seqs[i]`` of the same step row.

A reference stands in one of two places, and nowhere else:

- the whole output: ``{"$message": 0}`` (a tool step: its output is its tool message);
- the output's top-level ``message`` field: ``{"finish_reason": "stop", "usage": …,
  "model": …, "message": {"$message": 0}}`` (a model step), the field keeping its place.

An output that would read as a reference without being one (a custom step returning
``{"$message": 0}``, say) is stored as ``{"$literal": output}``, and a stored
``{"$literal": x}`` reads back as ``x``, untouched. So every JSON value round-trips.

``compact`` is applied on write (``rows.step_values``, by both engines' commits),
``from_v1`` is the version 1 → 2 upcaster (``payloads.REGISTRY``: a version 1 output is
a full copy, escaped where it could be mistaken for a reference), and ``referenced`` /
``expand`` rebuild the output on read (``load_journal``: one query for the referenced
messages of the whole journal). A reference resolves to the message's payload in the
current message format, exactly what ``Message.to_dict()`` wrote.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tether import errors

__all__ = ["LITERAL", "REFERENCE", "compact", "expand", "from_v1", "referenced"]

REFERENCE = "$message"
"""Key of a reference: ``{"$message": i}`` is the message at ``message_seqs[i]``."""
LITERAL = "$literal"
"""Key of an escaped output: ``{"$literal": x}`` is ``x`` as it is."""


def _only(value: Any, key: str) -> bool:
    return isinstance(value, dict) and len(value) == 1 and key in value


def _is_reference(value: Any) -> bool:
    return _only(value, REFERENCE) and type(value[REFERENCE]) is int


def _ambiguous(output: Any) -> bool:
    """Would ``output``, stored as it is, read back as something else?"""
    if _only(output, REFERENCE) or _only(output, LITERAL):
        return True
    return isinstance(output, dict) and _is_reference(output.get("message"))


def _escaped(output: Any) -> Any:
    return {LITERAL: output} if _ambiguous(output) else output


def compact(output: Any, messages: Sequence[Mapping[str, Any]]) -> Any:
    """The stored form of ``output`` for a commit appending ``messages`` (their
    ``Message.to_dict()``, in order): the output, or its ``message`` field, replaced by
    a reference when it equals one of them; else the output itself (escaped if needed)."""
    for i, message in enumerate(messages):
        if output == message:
            return {REFERENCE: i}
    if isinstance(output, dict) and "message" in output:
        for i, message in enumerate(messages):
            if output["message"] == message:
                return {**output, "message": {REFERENCE: i}}
    return _escaped(output)


def from_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Upcaster of a step payload (``{"output", "error", "usage", "message_seqs"}``)
    from version 1 to 2: the output (a full copy) is kept, escaped if it could be read
    as a reference."""
    return {**payload, "output": _escaped(payload["output"])}


def _references(stored: Any) -> Iterator[int]:
    if _is_reference(stored):
        yield stored[REFERENCE]
    elif isinstance(stored, dict) and _is_reference(stored.get("message")):
        yield stored["message"][REFERENCE]


def referenced(stored: Any, message_seqs: Sequence[int], *, row: str) -> list[int]:
    """The seqs of the messages ``stored`` refers to (none for most outputs)."""
    out: list[int] = []
    for i in _references(stored):
        if not 0 <= i < len(message_seqs):
            raise _corrupt(row, f"its output refers to message {i} of {len(message_seqs)}")
        out.append(message_seqs[i])
    return out


def expand(
    stored: Any,
    message_seqs: Sequence[int],
    messages: Mapping[int, Any],
    *,
    row: str,
) -> Any:
    """The step's output as ``run_step`` recorded it: ``stored`` with its references
    replaced by ``messages`` (payloads by seq, holding at least those ``referenced``)."""

    def message(i: int) -> Any:
        seq = message_seqs[i]
        if seq not in messages:
            raise _corrupt(row, f"its output refers to message seq {seq}, which is missing")
        return messages[seq]

    if _only(stored, LITERAL):
        return stored[LITERAL]
    if _is_reference(stored):
        return message(stored[REFERENCE])
    if isinstance(stored, dict) and _is_reference(stored.get("message")):
        return {**stored, "message": message(stored["message"][REFERENCE])}
    return stored


def _corrupt(row: str, what: str) -> errors.StoreCorrupt:
    return errors.StoreCorrupt(
        f"table steps, row {row}: {what}; the session's messages were changed by hand: "
        "restore the session from a backup (the row was left unchanged)"
    )
