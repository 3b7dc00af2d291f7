"""``ContextPolicy``: what a session's context may hold, and what happens when it is full.

``Budget`` is the policy resolved against a model: window − reserved output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from tether import errors
from tether.context import counting, embedders

Strategy = Literal["fail", "summarize", "memory"]
STRATEGIES: tuple[Strategy, ...] = ("fail", "summarize", "memory")


@dataclass(frozen=True, slots=True)
class ContextPolicy:
    """How the agent keeps each request within the model's context window.

    - ``window``: tokens the model accepts (default: the model's ``context_window``).
    - ``reserve_output``: tokens kept for the answer (default: the agent's
      ``max_output_tokens``, else the model's). Budget = window − reserve_output; no
      request is sent above it.
    - ``warn_at``: share of the budget at which ``context.pressure`` fires.
    - ``strategy``: ``fail`` (raise ``ContextBudgetExceeded``), ``summarize`` (fold the
      oldest messages into a pinned summary) or ``memory`` (move them into the
      session's vector memory and recall the most relevant each step).
    - ``keep_recent``: messages always kept verbatim while the budget allows.
    - ``compact_to``: a compaction folds until the request is at most this share of
      the budget, so it does not run again on the very next turn.
    - ``summary_tokens``: the most tokens the summary may take (default budget // 5).
    - ``recall_k`` / ``recall_tokens``: memories recalled per step, and the tokens kept for them
      (default budget // 5).
    - ``counter`` / ``tokenizer``: a ``TokenCounter``, or the path of a local
      ``tokenizer.json``; default the offline ``EstimateCounter``.
    - ``embedder``: vectors for memory; default the offline ``HashedEmbedder``.
    - ``server_truncation``: when the server reports far fewer prompt tokens than were
      counted (below ``truncation_ratio`` of them: it cut the prompt silently), ``warn``
      (a ``prompt.truncated`` event and metric) or ``fail`` (``PromptTruncated``).
    """

    window: int | None = None
    reserve_output: int | None = None
    warn_at: float = 0.8
    strategy: Strategy = "summarize"
    keep_recent: int = 4
    compact_to: float = 0.6
    summary_tokens: int | None = None
    recall_k: int = 4
    recall_tokens: int | None = None
    counter: counting.TokenCounter | None = None
    tokenizer: str | os.PathLike[str] | None = None
    embedder: embedders.Embedder | None = None
    server_truncation: Literal["warn", "fail"] = "warn"
    truncation_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise errors.InvalidInput(
                f"ContextPolicy strategy {self.strategy!r} is unknown; use one of {STRATEGIES}"
            )
        if not 0 < self.warn_at <= 1:
            raise errors.InvalidInput(
                f"ContextPolicy warn_at must be in (0, 1], not {self.warn_at}"
            )
        if not 0 < self.compact_to <= 1:
            raise errors.InvalidInput(
                f"ContextPolicy compact_to must be in (0, 1], not {self.compact_to}"
            )
        for field in ("window", "reserve_output", "summary_tokens", "recall_tokens"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise errors.InvalidInput(f"ContextPolicy {field} must be positive, not {value}")
        if self.keep_recent < 0 or self.recall_k < 1:
            raise errors.InvalidInput("ContextPolicy keep_recent must be ≥ 0 and recall_k ≥ 1")
        if self.server_truncation not in ("warn", "fail") or not 0 < self.truncation_ratio < 1:
            raise errors.InvalidInput(
                "ContextPolicy server_truncation must be 'warn' or 'fail' and "
                f"truncation_ratio in (0, 1), not {self.server_truncation!r}, "
                f"{self.truncation_ratio}"
            )
        if self.counter is not None and self.tokenizer is not None:
            raise errors.InvalidInput("ContextPolicy takes a counter or a tokenizer, not both")

    def make_counter(self) -> counting.TokenCounter:
        if self.counter is not None:
            return self.counter
        if self.tokenizer is not None:
            return counting.TokenizerCounter(self.tokenizer)
        return counting.EstimateCounter()

    def make_embedder(self) -> embedders.Embedder:
        return self.embedder if self.embedder is not None else embedders.HashedEmbedder()

    def resolve(self, model_window: int, output_tokens: int) -> Budget:
        """The numbers for one model; ``output_tokens`` is the default reserve."""
        window = self.window or model_window
        reserve = self.reserve_output or output_tokens
        budget = window - reserve
        if budget < 64:
            raise errors.InvalidInput(
                f"a context window of {window} tokens minus {reserve} reserved for the answer "
                f"leaves {budget} tokens for the prompt; raise the window or lower "
                "reserve_output / max_output_tokens"
            )
        return Budget(
            window=window,
            reserve_output=reserve,
            budget=budget,
            warn_tokens=int(budget * self.warn_at),
            target_tokens=int(budget * self.compact_to),
            summary_tokens=self.summary_tokens or max(32, budget // 5),
            recall_tokens=self.recall_tokens or max(32, budget // 5),
        )


@dataclass(frozen=True, slots=True)
class Budget:
    window: int
    reserve_output: int
    budget: int
    """The most prompt tokens a request may take: window − reserve_output."""
    warn_tokens: int
    target_tokens: int
    summary_tokens: int
    recall_tokens: int

    def to_dict(self) -> dict[str, int]:
        return {
            "window": self.window,
            "reserve_output": self.reserve_output,
            "budget": self.budget,
        }
