"""Prompts a model server cut without saying so.

A server that holds a smaller context than tether was told (Ollama's ``num_ctx``, a
llama.cpp ``-c`` below the model's window, a proxy that trims) may drop the start of
the prompt and answer anyway. The one trace is the answer's ``usage.prompt_tokens``:
far below what tether counted for the same request. ``suspected`` is that test; the
model step then emits ``prompt.truncated`` (metric ``tether_prompt_truncations_total``)
and, under ``ContextPolicy(server_truncation="fail")``, fails with ``PromptTruncated``.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_TOKENS = 64
"""Below this many counted tokens the test says nothing: estimates of short prompts
are too rough to compare."""


@dataclass(frozen=True, slots=True)
class Check:
    """What the model step compares: tether's own count and how far below it counts."""

    counted: int
    """Tokens tether's counter gave the request (before calibration, which learns from
    what the server reports and would learn the truncation too)."""
    ratio: float = 0.5
    """A report below ``counted * ratio`` is a truncation."""
    strict: bool = False
    """Fail the step (``PromptTruncated``) instead of only reporting it."""

    def suspected(self, reported: int | None) -> bool:
        if not reported or self.counted < MIN_TOKENS:
            return False
        return reported < self.counted * self.ratio
