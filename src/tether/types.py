"""Value types shared below the runtime: messages, tool calls, usage, records.

Everything here is plain data with a JSON form (``to_dict``/``from_dict``), so the
store, the models and the context manager agree on one shape without importing
each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
TaskStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
StepKind = Literal["model", "tool", "summarize", "sleep", "custom", "signal"]
StepStatus = Literal["completed", "failed"]

TASK_STATUSES: tuple[TaskStatus, ...] = (
    "queued", "running", "waiting", "completed", "failed", "cancelled"
)  # fmt: skip
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
STEP_KINDS: tuple[StepKind, ...] = ("model", "tool", "summarize", "sleep", "custom", "signal")

# Format version of every JSON payload tether stores (messages, step outputs, events).
# 2: a step's output refers to the messages its commit appended instead of copying them.
PAYLOAD_VERSION = 2


def now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to run a tool; ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ToolCall:
        return ToolCall(
            id=str(data["id"]), name=str(data["name"]), arguments=str(data["arguments"])
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as models see it."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    raw: Any = field(default=None, hash=False)
    """Another framework's own JSON for this message (an Agents SDK input item), kept
    verbatim so converting back is exact; None for tether's own messages."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.raw is not None:
            out["raw"] = self.raw
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Message:
        role = data["role"]
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"unknown message role {role!r}")
        return Message(
            role=role,
            content=data.get("content"),
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            raw=data.get("raw"),
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message in a session's ordered history; ``seq`` is its position (1, 2, …)."""

    seq: int
    message: Message
    task_id: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @staticmethod
    def from_dict(data: dict[str, Any] | None) -> Usage | None:
        if not data:
            return None
        return Usage(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)))


TOOL_CHOICE_MODES: tuple[str, ...] = ("auto", "required", "none")
"""``ModelRequest.tool_choice`` values that are modes; any other value names one tool."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    tool_choice: str | None = None
    """``auto``, ``required``, ``none``, or the name of the one tool the model must call;
    None leaves it to the server (``auto`` when tools are offered)."""
    output_schema: dict[str, Any] | None = None
    """``{"name": …, "schema": {…}}``: the answer must be JSON matching the schema."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messages": [m.to_dict() for m in self.messages],
            "tools": [t.to_dict() for t in self.tools],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        # Only when set, so requests recorded before these fields keep their fingerprints.
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.output_schema is not None:
            out["output_schema"] = self.output_schema
        return out


@dataclass(frozen=True, slots=True)
class ModelResponse:
    message: Message
    finish_reason: str = "stop"
    usage: Usage | None = None
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message.to_dict(),
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict() if self.usage else None,
            "model": self.model,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ModelResponse:
        return ModelResponse(
            message=Message.from_dict(data["message"]),
            finish_reason=str(data.get("finish_reason", "stop")),
            usage=Usage.from_dict(data.get("usage")),
            model=str(data.get("model", "")),
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    tenant: str
    agent: str
    created_at: float
    updated_at: float
    last_seq: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    """Context bookkeeping owned by the context manager (summary, compactions, tokens)."""

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "agent": self.agent,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "messages": self.last_seq,
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on a task. ``epoch`` fences every write the worker makes."""

    task_id: str
    owner: str
    epoch: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    tenant: str
    session_id: str
    agent: str
    status: TaskStatus
    input: str
    created_at: float
    updated_at: float
    output: Any = None
    error: dict[str, Any] | None = None
    spec: str | None = None
    """Where the agent was loaded from (``path.py:name``), so ``tether resume`` can find it."""
    input_seq: int | None = None
    """The session seq of this task's user message, set when the task first starts."""
    idempotency_key: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    lease_epoch: int = 0
    runs: int = 0
    cancel_requested: bool = False
    trace_context: dict[str, str] | None = None
    wait: dict[str, Any] | None = None
    """What the task waits (or last waited) for: ``{step, kind, name, deadline, since}``
    (``kind`` is ``signal`` or ``sleep``); see ``execution.waits``."""
    wake_at: float | None = None
    """When a ``waiting`` task may be claimed again; None: only a signal wakes it."""

    def to_public(self) -> dict[str, Any]:
        """The contract's task object (CLI ``--json`` and HTTP)."""
        err = self.error
        public_error = (
            {k: err[k] for k in ("type", "error_class", "retryable", "message") if k in err}
            if err
            else None
        )
        return {
            "id": self.id,
            "session_id": self.session_id,
            "tenant": self.tenant,
            "agent": self.agent,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": public_error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "runs": self.runs,
            "waiting": self.waiting_public(),
        }

    def waiting_public(self) -> dict[str, Any] | None:
        """What a ``waiting`` task waits for (None for any other status)."""
        if self.status != "waiting" or not self.wait:
            return None
        wait = self.wait
        return {
            "kind": wait.get("kind"),
            "name": wait.get("name"),
            "step": wait.get("step"),
            "since": wait.get("since"),
            "wake_at": self.wake_at,
        }


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One journal entry: a step that finished, for good (completed or failed)."""

    task_id: str
    index: int
    kind: StepKind
    name: str
    fingerprint: str
    status: StepStatus
    output: Any = None
    """JSON value; for model steps a ``ModelResponse.to_dict()``."""
    error: dict[str, Any] | None = None
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    worker: str | None = None
    message_seqs: tuple[int, ...] = ()
    """The session seqs of the messages this step appended."""
    usage: Usage | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "worker": self.worker,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class StepAttempt:
    """One failed try of a step, journaled before its retry."""

    task_id: str
    index: int
    attempt: int
    error: dict[str, Any]
    delay: float
    worker: str | None
    at: float


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One claim of a task by a worker: the first start, a recovery or a resume."""

    task_id: str
    run: int
    worker: str
    epoch: int
    started_at: float
    from_step: int
    reason: str
    """``start``, ``recovery`` (lease expired), ``handover`` (released on drain) or ``resume``."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    task_id: str
    seq: int
    name: str
    at: float
    data: dict[str, Any]
    step: int | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "seq": self.seq,
            "event": self.name,
            "at": self.at,
            "step": self.step,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class NewEvent:
    name: str
    data: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    at: float = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class StepCommit:
    """What one finished step writes, in one transaction, fenced by the lease epoch."""

    lease: Lease
    step: StepRecord
    messages: tuple[Message, ...] = ()
    session_state: dict[str, Any] | None = None
    """When set, replaces the session's context bookkeeping (summary, compactions)."""
    events: tuple[NewEvent, ...] = ()
    signal_seq: int | None = None
    """The signal this step consumes (``signals.seq`` of its task), marked consumed in
    the same transaction, so a signal is consumed exactly once."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    message_seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NewTask:
    tenant: str
    agent: str
    input: str
    session_id: str | None = None
    """None: a new session is created in the same transaction."""
    spec: str | None = None
    idempotency_key: str | None = None
    trace_context: dict[str, str] | None = None
    task_id: str | None = None
