"""Retries: classification of foreign exceptions, backoff with full jitter, task budgets.

A retry never restarts a task: it re-runs one step, and the journal keeps every
completed step. Budgets belong to the task; attempts already journaled count.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

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


def classify(exc: BaseException, *, where: str = "tool") -> errors.TetherError:
    """Turn any exception into a classified tether error.

    tether errors keep their class. For foreign exceptions raised by user code (tools,
    custom steps) the documented rule is: ``TimeoutError`` and ``ConnectionError``
    (and ``OSError`` subclasses about the network) are transient and retryable;
    everything else is a permanent failure of its ``where`` (a bug or bad input
    does not get better by trying again). Raise ``errors.ToolRetryable`` from a tool
    to ask for a retry explicitly."""
    if isinstance(exc, errors.TetherError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return errors.ToolTimeout(text) if where == "tool" else errors.ModelTimeout(text)
    if isinstance(exc, ConnectionError):
        return errors.ToolRetryable(text) if where == "tool" else errors.ModelConnectionError(text)
    if where == "tool":
        return errors.ToolFailed(text)
    return errors.WorkflowFailed(text)


@dataclass(frozen=True, slots=True)
class Retries:
    """The retry settings of one agent or workflow."""

    model: RetryPolicy = field(default_factory=RetryPolicy)
    tool: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    custom: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    budget: int | None = 20
    truncation_retries: int = 1
    """How many times an answer cut off by its token limit is retried with more room."""
