"""The ``summarize`` strategy's pieces: the summariser's prompt and its input.

The oldest messages are rendered as plain text (a tool call and its result read as
lines of a transcript) and sent, with the current summary, to the model with
``SUMMARY_INSTRUCTIONS``; the answer replaces the summary. A fold that does not fit
one summariser request is split into chunks of whole units, one summarize step
each. A message too long for a summariser request on its own is shortened in that
request with an explicit ``[… N characters omitted …]`` marker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tether import errors, types
from tether.context.window import Entry

SUMMARY_INSTRUCTIONS = (
    "You maintain the running summary of a conversation between a user and an AI "
    "assistant that uses tools. Rewrite the summary so that it also covers the new "
    "messages. Keep every fact, decision, number, name, tool result and open question "
    "the assistant may need later; drop greetings and repetition. Answer with the "
    "summary only."
)
RESUMMARY_INSTRUCTIONS = (
    "You maintain the running summary of a conversation between a user and an AI "
    "assistant that uses tools. The summary below has grown too long: rewrite it "
    "shorter, keeping every fact, decision, number, name and open question. Answer "
    "with the summary only."
)
MIN_CLIP = 200


def render(entry: Entry, clip: int | None = None) -> str:
    """One message as a transcript line."""
    m = entry.message
    parts: list[str] = []
    if m.content:
        parts.append(m.content)
    for call in m.tool_calls:
        parts.append(f"called {call.name}({call.arguments})")
    body = " ".join(parts) or "(empty)"
    if clip is not None and len(body) > clip:
        omitted = len(body) - clip
        body = f"{body[:clip]} [… {omitted} characters omitted …]"
    who = f"tool {m.name}" if m.role == "tool" and m.name else m.role
    return f"[message {entry.seq}] {who}: {body}"


def fold_request(prior: str | None, lines: Sequence[str], max_tokens: int) -> types.ModelRequest:
    current = prior if prior else "(no summary yet)"
    text = f"Current summary:\n{current}\n\nNew messages:\n" + "\n".join(lines)
    return types.ModelRequest(
        messages=(
            types.Message(role="system", content=SUMMARY_INSTRUCTIONS),
            types.Message(role="user", content=text),
        ),
        max_tokens=max_tokens,
    )


def resummary_request(summary: str, max_tokens: int) -> types.ModelRequest:
    return types.ModelRequest(
        messages=(
            types.Message(role="system", content=RESUMMARY_INSTRUCTIONS),
            types.Message(role="user", content=f"Summary:\n{summary}"),
        ),
        max_tokens=max_tokens,
    )


def chunks(
    groups: Sequence[Sequence[Entry]],
    max_tokens: int,
    count: Callable[[types.ModelRequest], int],
    request_limit: int,
) -> list[list[Entry]]:
    """Split the units to fold into chunks whose summariser request takes at most
    ``request_limit`` tokens, counting the prior summary at its largest (``max_tokens``); whole
    units per chunk. A unit too large alone is a chunk of its own (``lines_for``
    shortens it)."""
    prior = planned_text(max_tokens)
    out: list[list[Entry]] = []
    current: list[Entry] = []
    for group in groups:
        trial = current + list(group)
        if (
            current
            and count(fold_request(prior, [render(e) for e in trial], max_tokens)) > request_limit
        ):
            out.append(current)
            current = list(group)
        else:
            current = trial
    if current:
        out.append(current)
    return out


def planned_text(tokens: int) -> str:
    """Text the size of a ``tokens``-token summary, to plan the tokens a summary takes."""
    return "x" * (tokens * 4)


def lines_for(
    entries: Sequence[Entry],
    prior: str | None,
    max_tokens: int,
    count: Callable[[types.ModelRequest], int],
    request_limit: int,
) -> list[str]:
    """The transcript lines for ``entries`` that fit a summariser request of ``request_limit``
    tokens, clipping the longest messages (visibly) when they must."""
    clip: int | None = None
    while True:
        lines = [render(e, clip) for e in entries]
        if count(fold_request(prior, lines, max_tokens)) <= request_limit:
            return lines
        longest = max(len(render(e)) for e in entries)
        clip = (longest if clip is None else clip) // 2
        if clip < MIN_CLIP:
            raise errors.ContextBudgetExceeded(
                f"{len(entries)} messages cannot be summarised within {request_limit} tokens even "
                "when shortened; raise the context window or lower summary_tokens"
            )
