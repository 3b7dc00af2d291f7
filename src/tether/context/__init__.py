"""Context-window management: token counting, budgets, compaction, vector memory.

One idea per module: ``counting`` (token counters and their calibration),
``policy`` (``ContextPolicy`` and the budget it resolves to), ``ledger`` (the
session's context bookkeeping: where every message is), ``window`` (building a
request that fits), ``summarize`` and ``memory`` (the two compaction strategies),
``embedders`` (vectors for memory) and ``planner`` (the steps that tie them
together). This package imports neither ``models`` nor ``store``: the agent passes
in the services it needs (a completion callable, memory access, a journal).
"""

from __future__ import annotations
