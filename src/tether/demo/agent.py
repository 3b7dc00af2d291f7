"""The demo's agent: reads a folder of notes, one tool step per file, and saves a summary.

Every tool records its side effect in a ledger keyed by the step's idempotency key,
and skips the effect when the key is already there: that is how a tool stays
exactly-once when its step runs again after a crash.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tether.agent import Agent
from tether.models.scripted import ScriptedModel
from tether.tools import ToolContext, tool
from tether.types import ModelRequest

DOCS = Path(__file__).with_name("docs")


def workdir() -> Path:
    return Path(os.environ.get("TETHER_DEMO_DIR", "."))


def ledger_path() -> Path:
    return workdir() / "effects.jsonl"


def _log(kind: str, ctx: ToolContext, **fields: object) -> None:
    with open(workdir() / "activity.jsonl", "a") as f:
        f.write(
            json.dumps({"kind": kind, "key": ctx.idempotency_key, "pid": os.getpid(), **fields})
            + "\n"
        )
        f.flush()
        os.fsync(f.fileno())


def _effect_once(ctx: ToolContext, tool_name: str, detail: str) -> bool:
    """Append the effect unless this idempotency key already made it; True if appended."""
    path = ledger_path()
    if path.exists():
        for line in path.read_text().splitlines():
            if json.loads(line)["key"] == ctx.idempotency_key:
                return False
    with open(path, "a") as f:
        f.write(
            json.dumps({"key": ctx.idempotency_key, "tool": tool_name, "detail": detail}) + "\n"
        )
        f.flush()
        os.fsync(f.fileno())
    return True


@tool
def list_documents() -> list[str]:
    """List the documents in the library."""
    return sorted(p.name for p in DOCS.glob("*.md"))


@tool
def read_document(name: str, ctx: ToolContext) -> str:
    """Read one document and mark it as read in the ledger."""
    _log("start", ctx, tool="read_document", name=name)
    text = (DOCS / name).read_text()
    for _ in range(3):  # a slow tool that reports liveness while it works
        time.sleep(0.15)
        ctx.heartbeat()
    appended = _effect_once(ctx, "read_document", name)
    _log("effect", ctx, tool="read_document", name=name, appended=appended)
    time.sleep(0.4)  # post-processing: the window in which the demo kills the worker
    return text


@tool
def save_note(title: str, text: str, ctx: ToolContext) -> str:
    """Save a note to the notebook."""
    _log("start", ctx, tool="save_note", title=title)
    appended = _effect_once(ctx, "save_note", title)
    _log("effect", ctx, tool="save_note", title=title, appended=appended)
    return f"saved note {title!r}"


def script(request: ModelRequest) -> str | object:
    """The scripted model: a pure function of the conversation so far."""
    messages = list(request.messages)
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    turn = messages[last_user + 1 :]
    listed: list[str] | None = None
    read: list[tuple[str, str]] = []
    calls = {c.id: c for m in turn if m.role == "assistant" for c in m.tool_calls}
    saved = False
    for m in turn:
        if m.role != "tool" or m.tool_call_id not in calls:
            continue
        call = calls[m.tool_call_id]
        if call.name == "list_documents":
            listed = json.loads(m.content or "[]")
        elif call.name == "read_document":
            read.append((json.loads(call.arguments)["name"], m.content or ""))
        elif call.name == "save_note":
            saved = True
    if listed is None:
        return ScriptedModel.call("list_documents")
    done = {name for name, _ in read}
    for name in listed:
        if name not in done:
            return ScriptedModel.call("read_document", name=name)
    summary = " ".join(" ".join(text.split("\n\n")[-1].split()) for _, text in read)
    if not saved:
        return ScriptedModel.call("save_note", title="lessons", text=summary)
    return f"Read {len(read)} documents and saved a note. Lessons: {summary}"


librarian = Agent(
    name="librarian",
    model=ScriptedModel(script, name="scripted-librarian"),  # type: ignore[arg-type]
    instructions="Read every document in the library, then save one note with the lessons.",
    tools=[list_documents, read_document, save_note],
)
