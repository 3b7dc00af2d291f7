"""Building a request that fits: the pinned head, the live tail, and where to cut.

A request is: the system prompt, then the pinned context messages (the summary,
recalled memories), then the live messages (every session message after the
ledger's ``folded_upto``). Live messages are grouped into units that are never
split: an assistant message that calls tools together with the tool messages
answering it, or any other single message. Compaction folds whole units, oldest
first, and always keeps the newest unit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tether import types

Count = Callable[[Sequence[types.Message]], int]
"""Counts a request made of these messages (tools and calibration included)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A session message with its seq."""

    seq: int
    message: types.Message


def units(entries: Sequence[Entry]) -> list[list[Entry]]:
    """Group entries so a tool call is never separated from its results: an assistant
    message with tool calls takes every following tool message answering one of them."""
    out: list[list[Entry]] = []
    open_ids: set[str] = set()
    for entry in entries:
        m = entry.message
        if m.role == "tool" and out and m.tool_call_id in open_ids:
            out[-1].append(entry)
            continue
        out.append([entry])
        open_ids = {c.id for c in m.tool_calls} if m.role == "assistant" else set()
    return out


def message_cost(count: Count, message: types.Message) -> int:
    """What one message adds to a request."""
    return count([message]) - count([])


@dataclass(frozen=True, slots=True)
class Cut:
    """How many leading units to fold, and the request size estimated after."""

    units: int
    tokens_after: int


def choose_cut(
    unit_costs: Sequence[int],
    unit_sizes: Sequence[int],
    fixed: int,
    *,
    budget: int,
    target: int,
    keep_recent: int,
) -> Cut | None:
    """Fold units from the front until the request is at most ``target`` tokens, as
    long as ``keep_recent`` messages remain; then on until it fits ``budget``,
    whatever ``keep_recent`` says. The newest unit is never folded. ``fixed`` is
    what the request takes besides the units (system prompt, tools, the tokens kept
    for the summary or the recalled memories). None when even the newest unit alone
    does not fit."""
    total = fixed + sum(unit_costs)
    remaining = sum(unit_sizes)
    n = 0
    last = len(unit_costs) - 1
    while n < last and total > target and remaining - unit_sizes[n] >= keep_recent:
        total -= unit_costs[n]
        remaining -= unit_sizes[n]
        n += 1
    while n < last and total > budget:
        total -= unit_costs[n]
        remaining -= unit_sizes[n]
        n += 1
    if total > budget:
        return None
    return Cut(units=n, tokens_after=total)


def summary_message(text: str, messages: int) -> types.Message:
    """The summary, pinned right after the system prompt, and what it stands for."""
    return types.Message(
        role="system",
        content=(
            f"Summary of the earlier conversation:\n{text}\n\n"
            f"({messages} earlier messages are summarised above; the conversation "
            "continues below.)"
        ),
    )


def recall_message(moved: int, recalled: Sequence[tuple[int, str, str]]) -> types.Message:
    """The recalled memories (seq, role, text), pinned after the summary."""
    lines = [
        f"{moved} earlier messages were moved to memory; the most relevant to the "
        "conversation below are recalled here:"
    ]
    lines += [f"- [message {seq}, {role}] {text}" for seq, role, text in recalled]
    if not recalled:
        lines.append("- (none relevant)")
    return types.Message(role="system", content="\n".join(lines))
