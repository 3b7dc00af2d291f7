"""tether: reliable AI agents. Journaled steps, leases, explicit context, task-level retries."""

from __future__ import annotations

from tether.agent import Agent
from tether.context.policy import ContextPolicy
from tether.errors import (
    BudgetExhausted,
    ContextBudgetExceeded,
    ContextOverflow,
    LeaseLost,
    NonDeterminismError,
    OutputInvalid,
    OutputTruncated,
    SignalTimeout,
    StoreVersionError,
    TaskCancelled,
    TetherError,
    ToolFailed,
    ToolRetryable,
)
from tether.execution.context import TaskContext
from tether.execution.settings import ExecutionSettings
from tether.models.base import Model
from tether.models.openai import OpenAIModel
from tether.models.scripted import ScriptedModel
from tether.retry import Retries, RetryPolicy
from tether.runtime import Runtime, TaskResult
from tether.tools import Tool, ToolContext, current_step, tool
from tether.types import ModelRequest, ModelResponse

__all__ = [
    "Agent",
    "BudgetExhausted",
    "ContextBudgetExceeded",
    "ContextOverflow",
    "ContextPolicy",
    "ExecutionSettings",
    "LeaseLost",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "NonDeterminismError",
    "OpenAIModel",
    "OutputInvalid",
    "OutputTruncated",
    "Retries",
    "RetryPolicy",
    "Runtime",
    "ScriptedModel",
    "SignalTimeout",
    "StoreVersionError",
    "TaskCancelled",
    "TaskContext",
    "TaskResult",
    "TetherError",
    "Tool",
    "ToolContext",
    "ToolFailed",
    "ToolRetryable",
    "current_step",
    "tool",
]
