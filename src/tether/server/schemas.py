"""Every body the HTTP service reads or writes, as pydantic models (they make the OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from tether import types
from tether.store.base import Signal

MAX_INPUT_CHARS = 100_000
MAX_NAME_CHARS = 200
MAX_SEQ = 2**62
MAX_REASON_CHARS = 2_000
# Stated in the OpenAPI too, so clients (and fuzzers) know NUL is refused: PostgreSQL
# cannot store it in text, and both stores must accept the same inputs.
NO_NUL: JsonDict = {"pattern": "^[^\\u0000]*$"}


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


MAX_UNKNOWN_KEYS_SHOWN = 5


class _Strict(BaseModel):
    """A request body: unknown keys are refused, with one error however many there are
    (pydantic would make one error each: a 1 MB body of keys made a 4 MB answer)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                shown = ", ".join(repr(str(k)[:40]) for k in unknown[:MAX_UNKNOWN_KEYS_SHOWN])
                more = len(unknown) - MAX_UNKNOWN_KEYS_SHOWN
                raise ValueError(
                    f"unknown field(s) {shown}{f' and {more} more' if more > 0 else ''}; "
                    f"this body takes only {sorted(cls.model_fields)}"
                )
        return data


class SessionCreate(_Strict):
    agent: str = Field(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="A registered agent's name.",
        json_schema_extra=NO_NUL,
    )

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        return _no_nul(value, "agent")


class TaskCreate(_Strict):
    input: str = Field(
        min_length=1,
        max_length=MAX_INPUT_CHARS,
        description=f"The user message the task answers (at most {MAX_INPUT_CHARS} characters).",
        json_schema_extra=NO_NUL,
    )

    @field_validator("input")
    @classmethod
    def _input(cls, value: str) -> str:
        return _no_nul(value, "input")


class ErrorObject(BaseModel):
    type: Literal["tool", "model", "agent", "infra", "input"]
    error_class: str
    retryable: bool
    message: str


class ErrorBody(BaseModel):
    error: ErrorObject


class Session(BaseModel):
    id: str
    tenant: str
    agent: str
    created_at: float
    updated_at: float
    messages: int = Field(description="How many messages the session holds.")

    @staticmethod
    def of(record: types.SessionRecord) -> Session:
        return Session.model_validate(record.to_public())


class Waiting(BaseModel):
    kind: Literal["signal", "sleep"]
    name: str | None = Field(description="The signal's name (`approval.<step>` for a tool).")
    step: int | None
    since: float | None = Field(description="When the task started waiting.")
    wake_at: float | None = Field(description="When it is due without a signal (null: never).")


class Task(BaseModel):
    id: str
    session_id: str
    tenant: str
    agent: str
    status: Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
    input: str
    output: Any = None
    error: ErrorObject | None = None
    created_at: float
    updated_at: float
    runs: int
    cancel_requested: bool = Field(
        description="A cancel was asked; a running task stops at its next step boundary."
    )
    waiting: Waiting | None = Field(
        None, description="What a `waiting` task waits for; null for any other status."
    )

    @staticmethod
    def of(record: types.TaskRecord) -> Task:
        return Task.model_validate(
            {**record.to_public(), "cancel_requested": record.cancel_requested}
        )


class Step(BaseModel):
    index: int
    kind: Literal["model", "tool", "summarize", "sleep", "custom", "signal"]
    name: str
    status: Literal["completed", "failed"]
    attempts: int
    started_at: float
    finished_at: float
    worker: str | None = None
    error: ErrorObject | None = None

    @staticmethod
    def of(record: types.StepRecord) -> Step:
        data = record.to_public()
        err = data["error"]
        if err:
            data["error"] = {k: err.get(k) for k in ("type", "error_class", "retryable", "message")}
        return Step.model_validate(data)


class TaskDetail(Task):
    steps: list[Step] = Field(description="The task's journal, in step order.")


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str


class Message(BaseModel):
    seq: int
    task_id: str | None
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    created_at: float

    @staticmethod
    def of(stored: types.StoredMessage) -> Message:
        return Message.model_validate(
            {
                **stored.message.to_dict(),
                "seq": stored.seq,
                "task_id": stored.task_id,
                "created_at": stored.created_at,
            }
        )


class MessagePage(BaseModel):
    session_id: str
    messages: list[Message]
    next_after_seq: int | None = Field(
        description="Pass as after_seq for the next page; null when this page is the last."
    )


class Context(BaseModel):
    session_id: str
    tokens: int | None = Field(description="Context tokens the session uses, when counted.")
    limit: int | None = Field(description="The model's context budget in tokens, when known.")
    utilisation: float | None = Field(description="tokens / limit, when both are known.")
    summary: str | None = Field(description="The running summary of folded messages, if any.")
    compactions: int = Field(0, description="Compactions so far (summaries and memory moves).")
    memory_messages: int = Field(0, description="Messages moved into the session's vector memory.")
    state: dict[str, Any] = Field(description="The session's context bookkeeping, as stored.")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "draining", "unavailable", "saturated"]
    detail: str | None = None


class SignalSend(_Strict):
    data: Any = Field(None, description="Any JSON value; a wait_for_signal returns it.")


class Denial(_Strict):
    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_CHARS,
        description="Why the call is denied; the model reads it as the tool's result.",
        json_schema_extra=NO_NUL,
    )

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _no_nul(value, "reason")


class SignalSent(BaseModel):
    task_id: str
    name: str
    seq: int = Field(description="The signal's place among the task's signals (1, 2, …).")
    sent_at: float
    woke: bool = Field(description="The task was waiting for it and is due now.")

    @staticmethod
    def of(signal: Signal) -> SignalSent:
        return SignalSent(
            task_id=signal.task_id,
            name=signal.name,
            seq=signal.seq,
            sent_at=signal.sent_at,
            woke=signal.woke,
        )
