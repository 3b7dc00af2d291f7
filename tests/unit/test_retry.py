"""retry.py: classification of foreign exceptions, backoff with full jitter, budgets."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from tether import errors, retry
from tether.agent import Agent
from tether.models.scripted import ScriptedModel

# ---- RetryPolicy ---------------------------------------------------------------


def test_ceilings_grow_exponentially_and_are_capped() -> None:
    policy = retry.RetryPolicy(initial=0.5, multiplier=2.0, max_delay=3.0, max_attempts=10)
    assert [policy.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_multiplier_of_one_is_a_constant_backoff() -> None:
    policy = retry.RetryPolicy(initial=1.5, multiplier=1.0, max_delay=10.0)
    assert {policy.ceiling(n) for n in range(1, 6)} == {1.5}


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8, 30])
@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999999])
def test_full_jitter_is_uniform_between_zero_and_the_ceiling(attempt: int, r: float) -> None:
    policy = retry.RetryPolicy(initial=0.2, multiplier=3.0, max_delay=5.0)
    delay = policy.delay(attempt, rand=lambda: r)
    assert delay == pytest.approx(r * policy.ceiling(attempt))
    assert 0.0 <= delay <= policy.ceiling(attempt) <= policy.max_delay


def test_full_jitter_uses_the_whole_range() -> None:
    policy = retry.RetryPolicy(initial=1.0, multiplier=2.0, max_delay=8.0)
    delays = [policy.delay(3) for _ in range(400)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 1.0 and max(delays) > 3.0


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    policy = retry.RetryPolicy(initial=0.5, multiplier=2.0, max_delay=3.0, jitter=False)
    assert [policy.delay(n, rand=lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("retry_after", "r", "expected"),
    [
        (7.0, 0.0, 7.0),  # the server's hint is the lower bound
        (7.0, 1.0, 7.0),  # ... even when jitter would pick less
        (0.1, 1.0, 2.0),  # a small hint does not shorten the backoff
        (90.0, 0.5, 10.0),  # capped by max_delay
        (0.0, 0.5, 1.0),
    ],
)
def test_retry_after_is_honoured_within_max_delay(
    retry_after: float, r: float, expected: float
) -> None:
    policy = retry.RetryPolicy(initial=1.0, multiplier=2.0, max_delay=10.0)
    assert policy.delay(2, retry_after=retry_after, rand=lambda: r) == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0},
        {"max_delay": -0.1},
        {"multiplier": 0.5},
        {"max_attempts": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidInput):
        retry.RetryPolicy(**kwargs)


def test_no_retry_means_one_attempt() -> None:
    assert retry.NO_RETRY.max_attempts == 1


# ---- budgets and per-kind settings --------------------------------------------


def test_a_budget_allows_exactly_its_total() -> None:
    budget = retry.RetryBudget(3)
    spent = 0
    while budget.allows():
        budget.spend()
        spent += 1
    assert spent == 3


def test_journaled_attempts_count_against_a_budget() -> None:
    budget = retry.RetryBudget(3, spent=2)
    assert budget.allows()
    budget.spend()
    assert not budget.allows()


def test_a_zero_budget_allows_nothing_and_none_is_unlimited() -> None:
    assert not retry.RetryBudget(0).allows()
    unlimited = retry.RetryBudget(None, spent=10_000)
    assert unlimited.allows()


@pytest.mark.parametrize("kwargs", [{"budget": -1}, {"truncation_retries": -1}])
def test_invalid_retries_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidInput):
        retry.Retries(**kwargs)


def test_default_retries_per_step_kind() -> None:
    r = retry.Retries()
    assert r.model.max_attempts == 5
    assert r.tool.max_attempts == 3
    assert r.custom.max_attempts == 3
    assert r.budget == 20
    assert r.truncation_retries == 1


def test_agent_takes_per_kind_policies_and_a_budget() -> None:
    model_policy = retry.RetryPolicy(initial=0.1, max_attempts=7)
    tool_policy = retry.RetryPolicy(initial=0.2, max_attempts=2)
    agent = Agent(
        "a",
        ScriptedModel("ok"),
        model_retry=model_policy,
        tool_retry=tool_policy,
        retry_budget=4,
    )
    assert agent.retries.model is model_policy
    assert agent.retries.tool is tool_policy
    assert agent.retries.budget == 4
    defaults = Agent("b", ScriptedModel("ok"), retry_budget=None).retries
    assert defaults.model == retry.Retries().model
    assert defaults.budget is None


# ---- classify ------------------------------------------------------------------


FOREIGN: list[tuple[BaseException, str, type[errors.TetherError], bool]] = [
    (TimeoutError("read timed out"), "tool", errors.ToolTimeout, True),
    (TimeoutError("read timed out"), "model", errors.ModelTimeout, True),
    (TimeoutError("read timed out"), "agent", errors.StepTimeout, True),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "tool", errors.ToolConnectionLost, True),
    (ConnectionRefusedError(), "model", errors.ModelConnectionError, True),
    (BrokenPipeError(), "agent", errors.StepConnectionLost, True),
    (ConnectionAbortedError(), "tool", errors.ToolConnectionLost, True),
    (ValueError("bad n"), "tool", errors.ToolFailed, False),
    (KeyError("x"), "tool", errors.ToolFailed, False),
    (FileNotFoundError("no /x"), "tool", errors.ToolFailed, False),
    (ValueError("bad n"), "model", errors.ModelProtocolError, False),
    (ValueError("bad n"), "agent", errors.WorkflowFailed, False),
    (RuntimeError(), "agent", errors.WorkflowFailed, False),
]


@pytest.mark.parametrize(("exc", "where", "cls", "retryable"), FOREIGN)
def test_foreign_exceptions_follow_the_documented_rule(
    exc: BaseException, where: str, cls: type[errors.TetherError], retryable: bool
) -> None:
    err = retry.classify(exc, where=where)
    assert type(err) is cls
    assert err.retryable is retryable
    expected_where = where if where in ("tool", "model") else "agent"
    assert err.where == expected_where
    assert type(exc).__name__ in err.detail


def test_the_message_of_a_permanent_tool_failure_says_how_to_ask_for_a_retry() -> None:
    err = retry.classify(ValueError("no such city"), where="tool")
    assert "no such city" in err.detail
    assert "ToolRetryable" in err.detail


@pytest.mark.parametrize(
    "err",
    [
        errors.ToolRetryable("try later"),
        errors.ToolFailed("never"),
        errors.ToolFailed("flaky", retryable=True),
        errors.RateLimited("429", retry_after=3.0),
        errors.ContextOverflow("too long"),
        errors.InvalidToolArguments("n must be int"),
    ],
)
def test_tether_errors_keep_their_class(err: errors.TetherError) -> None:
    for where in ("tool", "model", "agent"):
        same = retry.classify(err, where=where)
        assert same is err
        assert same.retryable is err.retryable
