"""The error taxonomy: every class has a type, a stable error_class and a retryable flag,
and survives the journal (``error_record``/``error_from_dict``) and pickle."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from tether import errors

# name -> (type, error_class, retryable). Adding an error class means adding it here.
TAXONOMY: dict[str, tuple[str, str, bool]] = {
    "TetherError": ("infra", "TetherError", False),
    # input
    "InputError": ("input", "InputError", False),
    "InvalidInput": ("input", "InvalidInput", False),
    "UnknownAgent": ("input", "UnknownAgent", False),
    "NotFound": ("input", "NotFound", False),
    "Conflict": ("input", "Conflict", False),
    # tool
    "ToolError": ("tool", "ToolError", False),
    "ToolFailed": ("tool", "ToolFailed", False),
    "ToolRetryable": ("tool", "ToolFailed", True),
    "InvalidToolArguments": ("tool", "InvalidToolArguments", False),
    "UnknownTool": ("tool", "UnknownTool", False),
    "ToolTimeout": ("tool", "Timeout", True),
    "ToolConnectionLost": ("tool", "ConnectionLost", True),
    "StepStuck": ("tool", "StepStuck", True),
    # model
    "ModelError": ("model", "ModelError", False),
    "RateLimited": ("model", "RateLimited", True),
    "ServerError": ("model", "ServerError", True),
    "ModelTimeout": ("model", "Timeout", True),
    "ModelConnectionError": ("model", "ConnectionLost", True),
    "ModelRejected": ("model", "ModelRejected", False),
    "ContextOverflow": ("model", "ContextOverflow", False),
    "OutputTruncated": ("model", "OutputTruncated", True),
    "ModelProtocolError": ("model", "ModelProtocolError", False),
    "OutputInvalid": ("model", "OutputInvalid", False),
    "StreamInterrupted": ("model", "StreamInterrupted", True),
    "PromptTruncated": ("model", "PromptTruncated", False),
    # agent
    "AgentError": ("agent", "AgentError", False),
    "MaxStepsExceeded": ("agent", "MaxStepsExceeded", False),
    "BudgetExhausted": ("agent", "BudgetExhausted", False),
    "NonDeterminismError": ("agent", "NonDeterminism", False),
    "ContextBudgetExceeded": ("agent", "ContextOverflow", False),
    "WorkflowFailed": ("agent", "WorkflowFailed", False),
    "StepTimeout": ("agent", "Timeout", True),
    "StepConnectionLost": ("agent", "ConnectionLost", True),
    "NotInStep": ("agent", "NotInStep", False),
    "SignalTimeout": ("agent", "SignalTimeout", False),
    # infra
    "InfraError": ("infra", "InfraError", False),
    "StoreUnavailable": ("infra", "StoreUnavailable", True),
    "StoreVersionError": ("infra", "StoreVersionError", False),
    "StoreCorrupt": ("infra", "StoreCorrupt", False),
    "PayloadVersionError": ("infra", "PayloadVersionError", False),
    "MissingExtra": ("infra", "MissingExtra", False),
    "WorkerLost": ("infra", "WorkerLost", True),
}

SIGNALS: dict[str, tuple[str, str, bool]] = {
    "TetherSignal": ("infra", "Signal", False),
    "LeaseLost": ("infra", "LeaseLost", True),
    "TaskCancelled": ("agent", "TaskCancelled", False),
    "TaskWaiting": ("agent", "TaskWaiting", False),
}

PUBLIC_TYPES = sorted(n for n in errors.ERROR_TYPES if not n.startswith("_"))
CONTRACT_KEYS = {"type", "error_class", "retryable", "message"}


def test_the_table_names_every_error_class() -> None:
    assert sorted(TAXONOMY) == PUBLIC_TYPES


def test_every_class_is_documented_in_the_module_tree() -> None:
    tree = errors.__doc__ or ""
    for name in PUBLIC_TYPES + sorted(SIGNALS):
        if name not in ("TetherError", "TetherSignal"):
            assert name in tree, f"{name} is missing from errors.py's docstring tree"


@pytest.mark.parametrize("name", PUBLIC_TYPES)
def test_classification(name: str) -> None:
    where, error_class, retryable = TAXONOMY[name]
    err = errors.ERROR_TYPES[name]()
    assert err.where == where
    assert err.error_class == error_class
    assert err.retryable is retryable
    assert err.detail, "every class has a default message"
    assert "\n" not in err.message
    assert set(err.to_dict()) == CONTRACT_KEYS
    assert err.to_dict() == {
        "type": where,
        "error_class": error_class,
        "retryable": retryable,
        "message": err.message,
    }


def _full(name: str) -> errors.TetherError:
    return errors.ERROR_TYPES[name](
        f"{name} happened; do the thing",
        tenant="acme",
        session="s-1",
        task="t-1",
        step=4,
        retry_after=2.5,
    )


@pytest.mark.parametrize("name", PUBLIC_TYPES)
def test_round_trip_through_the_journal(name: str) -> None:
    err = _full(name)
    record = errors.error_record(err)
    stored = json.loads(json.dumps(record))
    back = errors.error_from_dict(stored)
    assert type(back) is type(err)
    assert back.to_dict() == err.to_dict()
    assert (back.tenant, back.session, back.task, back.step) == ("acme", "s-1", "t-1", 4)
    assert back.retry_after == 2.5
    assert back.detail == err.detail
    assert str(back) == str(err)


@pytest.mark.parametrize("name", PUBLIC_TYPES)
def test_round_trip_through_pickle(name: str) -> None:
    err = _full(name)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert back.to_dict() == err.to_dict()
    assert back.retry_after == 2.5
    assert str(back) == str(err)


@pytest.mark.parametrize("flip", [True, False])
def test_retryable_can_be_set_on_purpose_and_survives(flip: bool) -> None:
    err = errors.ToolFailed("flaky upstream", retryable=flip)
    assert err.retryable is flip
    assert errors.error_from_dict(errors.error_record(err)).retryable is flip
    assert pickle.loads(pickle.dumps(err)).retryable is flip
    # The class default is untouched.
    assert errors.ToolFailed().retryable is False


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_signals_are_classified_and_picklable(name: str) -> None:
    where, error_class, retryable = SIGNALS[name]
    cls: Any = getattr(errors, name)
    sig: errors.TetherSignal = cls("lease taken over by w2", task="t-9")
    assert isinstance(sig, BaseException)
    assert not isinstance(sig, Exception), "signals must unwind through `except Exception`"
    assert (sig.where, sig.error_class, sig.retryable) == (where, error_class, retryable)
    assert sig.to_dict() == {
        "type": where,
        "error_class": error_class,
        "retryable": retryable,
        "message": "lease taken over by w2",
    }
    back = pickle.loads(pickle.dumps(sig))
    assert type(back) is cls
    assert back.task == "t-9"
    assert str(back) == "lease taken over by w2"


def test_ids_appear_in_the_message_and_with_ids_fills_only_missing_ones() -> None:
    err = errors.ServerError("the server failed", task="t-1")
    err.with_ids(tenant="acme", session="s-1", task="other", step=0)
    assert err.task == "t-1"
    assert err.step == 0
    assert err.message == "the server failed (tenant acme, session s-1, task t-1, step 0)"
    assert str(err) == err.message
    assert err.to_dict()["message"] == err.message


def test_a_record_from_another_version_keeps_its_classification() -> None:
    record = {
        "type": "tool",
        "error_class": "QuotaGone",
        "retryable": True,
        "message": "the quota is gone (task t-1)",
        "python_type": "QuotaGoneError",
    }
    err = errors.error_from_dict(record)
    assert isinstance(err, errors.TetherError)
    assert (err.where, err.error_class, err.retryable) == ("tool", "QuotaGone", True)
    assert err.message == "the quota is gone (task t-1)"
    again = errors.error_from_dict(errors.error_record(err))
    assert again.to_dict() == err.to_dict()
    pickled = pickle.loads(pickle.dumps(err))
    assert pickled.to_dict() == err.to_dict()


def test_a_contract_only_record_rebuilds() -> None:
    public = errors.RateLimited("slow down", task="t-2").to_dict()
    err = errors.error_from_dict(public)
    assert err.to_dict() == public


def test_the_default_message_is_the_docstring_on_one_line() -> None:
    err = errors.NonDeterminismError()
    assert err.detail.startswith("On replay the workflow asked for a different step")
    assert "version the agent" in err.detail
    assert "  " not in err.detail
