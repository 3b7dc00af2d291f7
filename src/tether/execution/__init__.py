"""Execution: the step journal, replay, the durable-function context, leases and workers."""

from __future__ import annotations
