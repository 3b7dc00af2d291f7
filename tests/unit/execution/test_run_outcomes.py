"""runner.OUTCOMES: how a run ends when its workflow raises, one table, first match wins."""

from __future__ import annotations

import asyncio

import pytest

from tether import errors
from tether.execution.runner import outcome_of


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (errors.LeaseLost("taken over", task="t"), "abandoned"),
        (errors.TaskWaiting("waits", task="t"), "parked"),
        (errors.StepHandedOver("stuck", task="t"), "handed_over"),
        (asyncio.CancelledError(), "released"),
        (errors.TaskCancelled("cancelled", task="t"), "cancelled"),
        (errors.ToolFailed("bad input"), "failed"),
        (errors.BudgetExhausted("spent"), "failed"),
        (ValueError("a bug"), "crashed"),
    ],
)
def test_each_way_a_run_ends_has_one_outcome(exc: BaseException, outcome: str) -> None:
    assert outcome_of(exc) == outcome


def test_an_interrupt_is_not_an_outcome_of_the_task() -> None:
    assert outcome_of(KeyboardInterrupt()) is None
