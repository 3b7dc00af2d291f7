"""retry.decide: the retry choice as a pure function of error, attempt, policy and budget."""

from __future__ import annotations

import pytest

from tether import errors, retry

POLICY = retry.RetryPolicy(
    initial=1.0, multiplier=2.0, max_delay=30.0, max_attempts=3, jitter=False
)


def test_a_permanent_error_is_never_retried() -> None:
    budget = retry.RetryBudget(total=None)
    assert retry.decide(errors.ToolFailed("bad input"), 1, POLICY, budget) == retry.GiveUp(
        "permanent"
    )


def test_a_retryable_error_waits_its_backoff_until_the_policy_runs_out() -> None:
    budget = retry.RetryBudget(total=None)
    timeout = errors.ToolTimeout("slow")
    assert retry.decide(timeout, 1, POLICY, budget) == retry.RetryAfter(1.0)
    assert retry.decide(timeout, 2, POLICY, budget) == retry.RetryAfter(2.0)
    assert retry.decide(timeout, 3, POLICY, budget) == retry.GiveUp("attempts")


def test_a_spent_budget_gives_up_before_the_policy_does() -> None:
    budget = retry.RetryBudget(total=2, spent=2)
    assert retry.decide(errors.ToolTimeout("slow"), 1, POLICY, budget) == retry.GiveUp("budget")
    # The last attempt the policy allows says so, whatever the budget.
    assert retry.decide(errors.ToolTimeout("slow"), 3, POLICY, budget) == retry.GiveUp("attempts")


def test_retry_after_from_the_server_is_a_lower_bound() -> None:
    limited = errors.ModelConnectionError("503", retry_after=7.0)
    decision = retry.decide(limited, 1, POLICY, retry.RetryBudget(total=None))
    assert decision == retry.RetryAfter(7.0)


def test_a_truncated_answer_is_asked_again_at_once() -> None:
    truncated = errors.OutputTruncated("cut at max_tokens", retryable=True)
    decision = retry.decide(truncated, 1, POLICY, retry.RetryBudget(total=None))
    assert decision == retry.RetryAfter(0.0)


@pytest.mark.parametrize("attempt", [1, 2])
def test_deciding_spends_and_changes_nothing(attempt: int) -> None:
    budget = retry.RetryBudget(total=5, spent=1)
    err = errors.ToolTimeout("slow")
    retry.decide(err, attempt, POLICY, budget, rand=lambda: 0.5)
    assert budget.spent == 1
    assert err.retryable is True


def test_giving_up_copies_the_error_and_leaves_the_original_classified() -> None:
    err = errors.ToolTimeout("slow", task="t1", step=2)
    final = err.given_up("gave up after 3 attempts")
    assert type(final) is errors.ToolTimeout
    assert final.retryable is False and "gave up after 3 attempts" in final.message
    assert final.task == "t1" and final.step == 2
    assert err.retryable is True and "gave up" not in err.message
