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
    OutputTruncated,
    StoreVersionError,
    TaskCancelled,
    TetherError,
    ToolFailed,
    ToolRetryable,
)
from tether.execution.context import TaskContext
from tether.models.openai import OpenAIModel
from tether.models.scripted import ScriptedModel
from tether.retry import RetryPolicy
from tether.runtime import Runtime, TaskResult
from tether.tools import Tool, ToolContext, current_step, tool

__all__ = [
    "Agent",
    "BudgetExhausted",
    "ContextBudgetExceeded",
    "ContextOverflow",
    "ContextPolicy",
    "LeaseLost",
    "NonDeterminismError",
    "OpenAIModel",
    "OutputTruncated",
    "RetryPolicy",
    "Runtime",
    "ScriptedModel",
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
