"""Every error tether raises or records, classified on two axes.

``where`` says which part failed (``tool``, ``model``, ``agent``, ``infra``,
``input``); ``retryable`` says whether trying again can help. ``error_class`` is
the stable name operators alert on. Messages say what happened, to which
tenant/session/task/step, and what to do.

    TetherError
    ├── InputError (input)            InvalidInput, UnknownAgent, NotFound, Conflict
    ├── ToolError (tool)              ToolFailed, ToolRetryable, InvalidToolArguments,
    │                                 UnknownTool, ToolTimeout, ToolConnectionLost, StepStuck
    ├── ModelError (model)            RateLimited, ServerError, ModelTimeout,
    │                                 ModelConnectionError, ModelRejected, ContextOverflow,
    │                                 OutputTruncated, ModelProtocolError, OutputInvalid,
    │                                 StreamInterrupted, PromptTruncated
    ├── AgentError (agent)            MaxStepsExceeded, BudgetExhausted, NonDeterminismError,
    │                                 ContextBudgetExceeded, WorkflowFailed, StepTimeout,
    │                                 StepConnectionLost, NotInStep, SignalTimeout
    └── InfraError (infra)            StoreUnavailable, StoreVersionError, StoreCorrupt,
                                      PayloadVersionError, MissingExtra, WorkerLost
    TetherSignal (BaseException: unwinds through user code's ``except Exception``)
    ├── LeaseLost (infra, retryable)
    ├── TaskCancelled (agent)
    ├── StepHandedOver (tool, retryable: a stuck step made the worker give the task up)
    └── TaskWaiting (agent: the task waits for a signal or its time; it leaves the worker)

``error_class`` is the class name except where several classes share one operator
name (``_ERROR_CLASS``): every timeout is ``Timeout``, every lost connection
``ConnectionLost``. Retryable by class: the transient ones (HTTP 429 and 5xx,
timeouts, lost connections, a stuck step, an unavailable store, a lost worker or
lease, a truncated answer while its max_tokens can still grow); everything else is not.
Any error may be made retryable or not on purpose: ``ToolFailed("…", retryable=True)``.

This module imports nothing from tether, so any module may import it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from tether import redact

Where = Literal["tool", "model", "agent", "infra", "input"]


def _ids(
    tenant: str | None = None,
    session: str | None = None,
    task: str | None = None,
    step: int | None = None,
) -> str:
    parts = []
    if tenant is not None:
        parts.append(f"tenant {tenant}")
    if session is not None:
        parts.append(f"session {session}")
    if task is not None:
        parts.append(f"task {task}")
    if step is not None:
        parts.append(f"step {step}")
    return ", ".join(parts)


class TetherError(Exception):
    """Something went wrong in tether."""

    where: ClassVar[Where] = "infra"
    retryable: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        tenant: str | None = None,
        session: str | None = None,
        task: str | None = None,
        step: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        if retryable is not None:
            self.retryable = retryable
        # The default detail is the class's docstring, on one line. Credentials never
        # reach a message, whoever wrote it (a store URL in a driver's error, say).
        self.detail = redact.text(
            message or " ".join((self.__doc__ or type(self).__name__).split())
        )
        self.tenant = tenant
        self.session = session
        self.task = task
        self.step = step
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def error_class(self) -> str:
        return _ERROR_CLASS.get(type(self).__name__, type(self).__name__)

    @property
    def message(self) -> str:
        where = _ids(self.tenant, self.session, self.task, self.step)
        return f"{self.detail} ({where})" if where else self.detail

    def with_ids(
        self,
        *,
        tenant: str | None = None,
        session: str | None = None,
        task: str | None = None,
        step: int | None = None,
    ) -> TetherError:
        """Fill in ids the raiser did not know; keeps ids already set."""
        self.tenant = self.tenant or tenant
        self.session = self.session or session
        self.task = self.task or task
        self.step = self.step if self.step is not None else step
        self.args = (self.message,)
        return self

    def given_up(self, why: str) -> TetherError:
        """A copy of this error, no longer retryable, whose message adds ``why``; this
        one keeps its own classification (whoever else holds it sees it unchanged)."""
        final = type(self).__new__(type(self))
        final.__dict__.update(self.__dict__)
        final.detail = f"{self.detail} ({why})"
        final.retryable = False
        final.args = (final.message,)
        return final

    def to_dict(self) -> dict[str, Any]:
        """The contract's error object: ``{type, error_class, retryable, message}``."""
        return {
            "type": self.where,
            "error_class": self.error_class,
            "retryable": self.retryable,
            "message": self.message,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (
                type(self).__name__,
                self.detail,
                self.tenant,
                self.session,
                self.task,
                self.step,
                self.retry_after,
                self.retryable,
            ),
        )


def _rebuild(
    name: str,
    detail: str,
    tenant: str | None,
    session: str | None,
    task: str | None,
    step: int | None,
    retry_after: float | None,
    retryable: bool,
) -> TetherError:
    cls = ERROR_TYPES.get(name, TetherError)
    return cls(
        detail,
        tenant=tenant,
        session=session,
        task=task,
        step=step,
        retry_after=retry_after,
        retryable=retryable,
    )


# ---- input -----------------------------------------------------------------


class InputError(TetherError):
    """The request was invalid; fix the input and submit again."""

    where: ClassVar[Where] = "input"


class InvalidInput(InputError):
    """The input was invalid; fix it and submit again."""


class UnknownAgent(InputError):
    """No agent or workflow is registered under that name; register it with Runtime.register."""


class NotFound(InputError):
    """No such object for this tenant."""


class Conflict(InputError):
    """The object is not in a state that allows this operation."""


# ---- tool ------------------------------------------------------------------


class ToolError(TetherError):
    """A tool failed."""

    where: ClassVar[Where] = "tool"


class ToolFailed(ToolError):
    """A tool raised an error that retrying will not fix."""


class ToolRetryable(ToolError):
    """A tool failed in a way that may succeed if tried again (raise it from a tool on purpose)."""

    retryable: bool = True


class InvalidToolArguments(ToolError):
    """The model called a tool with arguments that do not match its schema."""


class UnknownTool(ToolError):
    """The model called a tool that the agent does not have."""


class ToolTimeout(ToolError):
    """A tool ran past its timeout."""

    retryable: bool = True


class ToolConnectionLost(ToolError):
    """A tool lost its connection (refused, reset, broken pipe); it is tried again."""

    retryable: bool = True


class StepStuck(ToolError):
    """A step stopped reporting heartbeats past its heartbeat timeout."""

    retryable: bool = True


# ---- model -----------------------------------------------------------------


class ModelError(TetherError):
    """The model endpoint failed."""

    where: ClassVar[Where] = "model"


class RateLimited(ModelError):
    """The model endpoint answered 429 Too Many Requests."""

    retryable: bool = True


class ServerError(ModelError):
    """The model endpoint answered with a 5xx status."""

    retryable: bool = True


class ModelTimeout(ModelError):
    """The model endpoint did not answer within the timeout."""

    retryable: bool = True


class ModelConnectionError(ModelError):
    """The connection to the model endpoint failed or was reset."""

    retryable: bool = True


class ModelRejected(ModelError):
    """The model endpoint rejected the request (a 4xx status); retrying the same
    request will not help."""


class ContextOverflow(ModelError):
    """The model endpoint said the request exceeds its context length; compact the
    context or fail."""


class OutputTruncated(ModelError):
    """The model's answer was cut off by its token limit (finish_reason "length")."""

    retryable: bool = True


class ModelProtocolError(ModelError):
    """The model endpoint answered with something that is not a chat completion (or a
    Model implementation raised an error that is not a tether error)."""


class OutputInvalid(ModelError):
    """The model's structured answer did not validate against the agent's output_type
    within the allowed tries; change the instructions, the model or output_retries."""


class StreamInterrupted(ModelError):
    """The model's streamed answer stopped before its end (no finish_reason); the
    step is retried, the partial text is never used as an answer."""

    retryable: bool = True


class PromptTruncated(ModelError):
    """The model server counted far fewer prompt tokens than tether sent: it cut the
    prompt silently (a context window configured below tether's)."""


# ---- agent -----------------------------------------------------------------


class AgentError(TetherError):
    """The agent or workflow logic failed."""

    where: ClassVar[Where] = "agent"


class MaxStepsExceeded(AgentError):
    """The agent reached max_steps without a final answer; raise max_steps or fix the prompt."""


class BudgetExhausted(AgentError):
    """The task spent its whole retry budget."""


class NonDeterminismError(AgentError):
    """On replay the workflow asked for a different step than the journal recorded.

    Check that the workflow is deterministic, or version the agent so old tasks
    finish on the recorded path."""


class NotInStep(AgentError):
    """Code that needs a running step (``tether.current_step()``) ran outside one."""


class ContextBudgetExceeded(AgentError):
    """The request does not fit the context budget and the policy is "fail"."""


class WorkflowFailed(AgentError):
    """The workflow function raised an error."""


class StepTimeout(AgentError):
    """A custom step (``ctx.step``) raised ``TimeoutError``; it is tried again."""

    retryable: bool = True


class SignalTimeout(AgentError):
    """A ``wait_for_signal`` reached its timeout without the signal; not retried (wait
    again, or pass ``default=`` to go on without it)."""


class StepConnectionLost(AgentError):
    """A custom step (``ctx.step``) raised ``ConnectionError``; it is tried again."""

    retryable: bool = True


# ---- infra -----------------------------------------------------------------


class InfraError(TetherError):
    """The infrastructure under tether failed."""

    where: ClassVar[Where] = "infra"


class StoreUnavailable(InfraError):
    """The store could not be reached; tether retries with backoff."""

    retryable: bool = True


class StoreVersionError(InfraError):
    """The store's schema version does not match this code."""


class StoreCorrupt(InfraError):
    """The store holds data that breaks an invariant."""


class PayloadVersionError(InfraError):
    """A stored payload has a format version this code cannot read."""


class MissingExtra(InfraError):
    """An optional dependency is not installed."""


class WorkerLost(InfraError):
    """The worker running the task stopped before finishing it; the task resumes
    from its journal."""

    retryable: bool = True


# ---- signals ---------------------------------------------------------------


class TetherSignal(BaseException):
    """Control flow that must unwind through user code, not an error to handle.

    Classified like errors (``where``, ``error_class``, ``retryable``, ``to_dict``)
    so that events and logs that mention one read the same way."""

    error_class: ClassVar[str] = "Signal"
    where: ClassVar[Where] = "infra"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, task: str | None = None) -> None:
        self.task = task
        self.message = message
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.where,
            "error_class": self.error_class,
            "retryable": self.retryable,
            "message": self.message,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_signal, (type(self).__name__, self.message, self.task))


class LeaseLost(TetherSignal):
    """This worker's lease on the task was taken over; its writes are fenced off.

    Retryable: the task itself is fine and continues from its journal under the
    worker that holds the lease now."""

    error_class: ClassVar[str] = "LeaseLost"
    where: ClassVar[Where] = "infra"
    retryable: ClassVar[bool] = True


class TaskCancelled(TetherSignal):
    """The task was cancelled; it stops at the next step boundary."""

    error_class: ClassVar[str] = "TaskCancelled"
    where: ClassVar[Where] = "agent"
    retryable: ClassVar[bool] = False


class StepHandedOver(TetherSignal):
    """A stuck step made this worker give the task up (``on_stuck="handover"``); a
    fresh run continues it from the journal."""

    error_class: ClassVar[str] = "StepStuck"
    where: ClassVar[Where] = "tool"
    retryable: ClassVar[bool] = True


class TaskWaiting(TetherSignal):
    """The task reached a wait (a signal not yet sent, a long sleep): it leaves this
    worker, holding no lease, until its signal or its time wakes it on any worker.

    ``wait`` is what the store keeps (``{step, kind, name, deadline, since}``) and
    ``wake_at`` when the task is due without a signal (None: only a signal wakes it)."""

    error_class: ClassVar[str] = "TaskWaiting"
    where: ClassVar[Where] = "agent"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        task: str | None = None,
        wait: dict[str, Any] | None = None,
        wake_at: float | None = None,
    ) -> None:
        super().__init__(message, task=task)
        self.wait: dict[str, Any] = dict(wait or {})
        self.wake_at = wake_at


SIGNAL_TYPES: dict[str, type[TetherSignal]] = {
    c.__name__: c for c in (TetherSignal, LeaseLost, TaskCancelled, StepHandedOver, TaskWaiting)
}


def _rebuild_signal(name: str, message: str, task: str | None) -> TetherSignal:
    return SIGNAL_TYPES.get(name, TetherSignal)(message, task=task)


# Stable class names where the Python name differs from the operator's name.
_ERROR_CLASS: dict[str, str] = {
    "ModelTimeout": "Timeout",
    "ToolTimeout": "Timeout",
    "ModelConnectionError": "ConnectionLost",
    "ToolConnectionLost": "ConnectionLost",
    "StepTimeout": "Timeout",
    "StepConnectionLost": "ConnectionLost",
    "NonDeterminismError": "NonDeterminism",
    "ContextBudgetExceeded": "ContextOverflow",
    "ToolRetryable": "ToolFailed",
}


def _all_subclasses(cls: type[TetherError]) -> list[type[TetherError]]:
    out: list[type[TetherError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERROR_TYPES: dict[str, type[TetherError]] = {c.__name__: c for c in _all_subclasses(TetherError)}


def error_from_dict(data: dict[str, Any]) -> TetherError:
    """Rebuild an error recorded in the journal (the inverse of ``error_record``).

    A record from another version of the code (an unknown ``python_type``, or only
    the contract's four keys) keeps its recorded ``type``, ``error_class`` and
    ``retryable``."""
    cls = ERROR_TYPES.get(str(data.get("python_type", "")))
    if cls is None or cls is _RecordedError:
        cls = _RecordedError.make(str(data.get("type", "infra")), bool(data.get("retryable")))
    step = data.get("step")
    retry_after = data.get("retry_after")
    err = cls(
        str(data.get("detail") or data.get("message", "")),
        tenant=_text_or_none(data.get("tenant")),
        session=_text_or_none(data.get("session")),
        task=_text_or_none(data.get("task")),
        step=step if isinstance(step, int) else None,
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        retryable=bool(data.get("retryable")),
    )
    if isinstance(err, _RecordedError):
        err.recorded_class = str(data.get("error_class", "Unknown"))
    return err


def error_record(err: TetherError) -> dict[str, Any]:
    """What the journal stores for an error: the contract dict plus what rebuilds it
    (the Python class, the detail without ids, the ids and ``retry_after``)."""
    return {
        **err.to_dict(),
        "python_type": type(err).__name__,
        "detail": err.detail,
        "tenant": err.tenant,
        "session": err.session,
        "task": err.task,
        "step": err.step,
        "retry_after": err.retry_after,
    }


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _RecordedError(TetherError):
    """An error recorded by another version of the code, kept as it was recorded."""

    recorded_class: str = "Unknown"

    @property
    def error_class(self) -> str:
        return self.recorded_class

    def __reduce__(self) -> tuple[Any, ...]:
        return (error_from_dict, (error_record(self),))

    @staticmethod
    def make(where: str, retryable: bool) -> type[_RecordedError]:
        return type(
            "_RecordedError",
            (_RecordedError,),
            {"where": where, "retryable": retryable},
        )
