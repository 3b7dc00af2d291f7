"""The session's context as an operator reads it (CLI and HTTP show the same thing)."""

from __future__ import annotations

from typing import Any


def context_view(state: dict[str, Any]) -> dict[str, Any]:
    """The last request's tokens against the limit, the summary, memory and the
    compaction history, from the ledger kept in the session state."""
    if not state:
        return {}
    last = state.get("last") or {}
    summary = state.get("summary")
    memory = state.get("memory") or {}
    tokens = last.get("reported") if last.get("reported") is not None else last.get("estimated")
    return {
        "tokens": tokens,
        "reported_tokens": last.get("reported"),
        "estimated_tokens": last.get("estimated"),
        "limit": last.get("budget"),
        "window": last.get("window"),
        "utilisation": last.get("utilisation"),
        "counter": last.get("counter"),
        "calibration": state.get("calibration"),
        "folded_upto": state.get("folded_upto", 0),
        "summary": summary,
        "memory_messages": memory.get("messages", 0),
        "compactions_total": state.get("compactions_total", 0),
        "compactions": state.get("compactions") or [],
    }
