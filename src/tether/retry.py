"""Retries: classification of foreign exceptions, backoff with full jitter, task budgets.

A retry never restarts a task: it re-runs one step, and the journal keeps every
completed step. Budgets belong to the task; attempts already journaled count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tether import errors


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one step is retried: exponential backoff with full jitter, capped.

    ``max_attempts`` counts the first try: 1 means never retry. A ``Retry-After``
    from the server is honoured as the lower bound of the delay (capped by
    ``max_delay``)."""

    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    max_attempts: int = 5
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max_delay < 0:
            raise errors.InvalidInput("RetryPolicy delays must not be negative")
        if self.multiplier < 1:
            raise errors.InvalidInput("RetryPolicy.multiplier must be at least 1")
        if self.max_attempts < 1:
            raise errors.InvalidInput("RetryPolicy.max_attempts must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay, self.initial * self.multiplier ** max(0, attempt - 1))

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        ceiling = self.ceiling(attempt)
        base = rand() * ceiling if self.jitter else ceiling
        if retry_after is not None:
            base = max(base, min(retry_after, self.max_delay))
        return base


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(slots=True)
class RetryBudget:
    """The retries a whole task may spend. Completed steps consume nothing; failed
    attempts journaled by earlier runs of the task count against it."""

    total: int | None
    spent: int = 0

    def allows(self) -> bool:
        return self.total is None or self.spent < self.total

    def spend(self) -> None:
        self.spent += 1


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Try the step again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not try the step again: its error is ``permanent``, or it used the ``attempts``
    its policy allows, or the task's retry ``budget`` is spent."""

    reason: Literal["permanent", "attempts", "budget"]


def decide(
    error: errors.TetherError,
    attempt: int,
    policy: RetryPolicy,
    budget: RetryBudget,
    *,
    rand: Callable[[], float] = random.random,
) -> RetryAfter | GiveUp:
    """Whether a step that failed with ``error`` on try number ``attempt`` (1-based) is
    tried again, and after how long. Pure: it spends nothing and changes nothing.

    A truncated answer is asked again at once (with a larger ``max_tokens``): the server is fine, so
    backing off would only waste time."""
    if not error.retryable:
        return GiveUp("permanent")
    if attempt >= policy.max_attempts:
        return GiveUp("attempts")
    if not budget.allows():
        return GiveUp("budget")
    if isinstance(error, errors.OutputTruncated):
        return RetryAfter(0.0)
    return RetryAfter(policy.delay(attempt, retry_after=error.retry_after, rand=rand))


def classify(exc: BaseException, *, where: str = "tool") -> errors.TetherError:
    """Turn any exception into a classified tether error.

    tether errors keep their class (and their ``retryable``). The documented rule
    for foreign exceptions raised by user code (tools, custom steps, a ``Model``
    implementation), by ``where`` the step runs (``tool``, ``model``, else ``agent``):

    ==========================  =================  ====================  ====================
    exception                   tool               model                 agent (``ctx.step``)
    ==========================  =================  ====================  ====================
    ``TimeoutError``            ToolTimeout        ModelTimeout          StepTimeout
    ``ConnectionError``         ToolConnectionLost ModelConnectionError  StepConnectionLost
    anything else               ToolFailed         ModelProtocolError    WorkflowFailed
    ==========================  =================  ====================  ====================

    Timeouts and lost connections (``ConnectionError`` covers refused, reset,
    aborted and broken pipe) are transient: retryable. Anything else is a permanent
    failure: a bug or bad input does not get better by trying again. A tool asks for
    a retry on purpose by raising ``errors.ToolRetryable`` (or any tether error with
    ``retryable=True``), and refuses one with ``errors.ToolFailed``."""
    if isinstance(exc, errors.TetherError):
        return exc
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, TimeoutError):
        timeout = _TIMEOUTS.get(where, errors.StepTimeout)
        return timeout(f"{text}; tried again with backoff")
    if isinstance(exc, ConnectionError):
        lost = _CONNECTIONS.get(where, errors.StepConnectionLost)
        return lost(f"{text}; tried again with backoff")
    if where == "tool":
        return errors.ToolFailed(
            f"{text}. Unknown exceptions are not retried; raise tether.ToolRetryable from "
            "the tool when trying again can help"
        )
    if where == "model":
        return errors.ModelProtocolError(
            f"the model raised {text}; a Model implementation must raise tether ModelError "
            "subclasses only"
        )
    return errors.WorkflowFailed(text)


_TIMEOUTS: dict[str, type[errors.TetherError]] = {
    "tool": errors.ToolTimeout,
    "model": errors.ModelTimeout,
}
_CONNECTIONS: dict[str, type[errors.TetherError]] = {
    "tool": errors.ToolConnectionLost,
    "model": errors.ModelConnectionError,
}


@dataclass(frozen=True, slots=True)
class Retries:
    """The retry settings of one agent or workflow."""

    model: RetryPolicy = field(default_factory=RetryPolicy)
    tool: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    custom: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    budget: int | None = 20
    truncation_retries: int = 1
    """How many times an answer cut off by its token limit is retried, with a larger
    ``max_tokens`` each time."""

    def __post_init__(self) -> None:
        if self.budget is not None and self.budget < 0:
            raise errors.InvalidInput(
                f"a retry budget must be None (unlimited) or at least 0, not {self.budget}"
            )
        if self.truncation_retries < 0:
            raise errors.InvalidInput(
                f"truncation_retries must be at least 0, not {self.truncation_retries}"
            )
