"""Token counters: how many tokens a request takes, counted offline.

A ``TokenCounter`` counts a request (messages and tool definitions). Two ship:

- ``EstimateCounter`` (the default, needs nothing): the documented rule of
  ``tether.models.scripted.estimate_tokens`` (about four characters a token, plus
  fixed overheads per message, tool call, tool and reply), scaled up by a safety
  margin and rounded up, so it never counts fewer tokens than that rule;
- ``TokenizerCounter``: a Hugging Face ``tokenizer.json`` file the user points at,
  loaded with the ``tokenizers`` library (the ``tether[tokenizers]`` extra). Nothing
  is ever downloaded.

A model server reports the exact ``usage.prompt_tokens`` after each call;
``Calibration`` keeps, per session, the largest ratio reported/estimated seen, and
scales every later estimate by it (never down), so a counter that undercounts a
model's tokenizer learns to count higher.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether import errors, types

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
TOOL_CALL_OVERHEAD = 4
TOOL_OVERHEAD = 8
REPLY_OVERHEAD = 3
DEFAULT_MARGIN = 0.1
"""The default counter counts 10% more than the estimate rule (rounded up)."""


class TokenCounter(Protocol):
    """Counts the prompt tokens of a request. Counting must be deterministic."""

    name: str

    def count(
        self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()
    ) -> int: ...


def structured_count(
    text_tokens: Callable[[str], int],
    messages: Sequence[types.Message],
    tools: Sequence[types.ToolSpec],
) -> int:
    """The shape shared by the counters: ``REPLY_OVERHEAD`` + per message
    ``MESSAGE_OVERHEAD`` + its content and name + per tool call ``TOOL_CALL_OVERHEAD``
    + its name and arguments; + per tool ``TOOL_OVERHEAD`` + its name, description
    and compact sorted-keys JSON schema. ``text_tokens`` counts one text."""
    total = REPLY_OVERHEAD + tools_units(text_tokens, tools)
    for message in messages:
        total += message_units(text_tokens, message)
    return total


def message_units(text_tokens: Callable[[str], int], message: types.Message) -> int:
    """What one message adds to ``structured_count``."""
    total = MESSAGE_OVERHEAD + text_tokens(message.content or "") + text_tokens(message.name or "")
    for call in message.tool_calls:
        total += TOOL_CALL_OVERHEAD + text_tokens(call.name) + text_tokens(call.arguments)
    return total


def tools_units(text_tokens: Callable[[str], int], tools: Sequence[types.ToolSpec]) -> int:
    """What the tool definitions add to ``structured_count``."""
    total = 0
    for tool in tools:
        schema = json.dumps(tool.parameters, sort_keys=True, separators=(",", ":"))
        total += (
            TOOL_OVERHEAD
            + text_tokens(tool.name)
            + text_tokens(tool.description)
            + text_tokens(schema)
        )
    return total


def _quarter(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


class EstimateCounter:
    """The offline default: ``ceil(rule × (1 + margin))`` where ``rule`` is the
    estimate rule above. ``margin`` ≥ 0, so it never undercounts the rule."""

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        if not 0 <= margin <= 10:
            raise errors.InvalidInput(f"EstimateCounter margin must be in [0, 10], got {margin}")
        self.margin = margin
        self.name = f"estimate(+{margin:.0%})"

    def __repr__(self) -> str:
        return f"EstimateCounter(margin={self.margin})"

    def rule(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        """The unscaled estimate rule."""
        return structured_count(_quarter, messages, tools)

    def text_tokens(self, text: str) -> int:
        return _quarter(text)

    def scale(self, units: int) -> int:
        """The estimate rule's total, with the margin."""
        return math.ceil(units * (1 + self.margin) - 1e-9)

    def count(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        return self.scale(self.rule(messages, tools))


class TokenizerCounter:
    """Counts with a local Hugging Face ``tokenizer.json`` (``tokenizers`` library).

    Each text is encoded without special tokens; the per-message, tool-call, tool
    and reply overheads of the estimate rule stand for the chat template."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            import tokenizers
        except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
            raise errors.MissingExtra(
                "counting tokens with a tokenizer.json needs the 'tokenizers' library: "
                "pip install 'tether[tokenizers]'"
            ) from exc
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise errors.InvalidInput(
                f"tokenizer file {self.path!r} does not exist; point ContextPolicy(tokenizer=...) "
                "at a local tokenizer.json (tether never downloads one)"
            )
        try:
            self._tokenizer = tokenizers.Tokenizer.from_file(self.path)
        except Exception as exc:  # the library raises plain Exceptions for bad files
            raise errors.InvalidInput(
                f"tokenizer file {self.path!r} could not be loaded ({exc}); it must be a "
                "Hugging Face tokenizer.json"
            ) from exc
        self.name = f"tokenizer({os.path.basename(self.path)})"

    def __repr__(self) -> str:
        return f"TokenizerCounter({self.path!r})"

    def text_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def scale(self, units: int) -> int:
        return units

    def count(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        return structured_count(self.text_tokens, messages, tools)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A session's correction of its counter by what the model reported.

    ``ratio`` is the largest ``reported / estimated`` seen (at least 1.0): estimates
    are multiplied by it, so they only ever grow towards the model's own count."""

    ratio: float = 1.0
    samples: int = 0
    last_estimated: int | None = None
    last_reported: int | None = None

    def apply(self, tokens: int) -> int:
        return tokens if self.ratio <= 1.0 else math.ceil(tokens * self.ratio - 1e-9)

    def observe(self, estimated: int, reported: int) -> Calibration:
        ratio = self.ratio
        if estimated > 0 and reported > 0:
            ratio = max(ratio, reported / estimated)
        return Calibration(round(ratio, 6), self.samples + 1, estimated, reported)

    def bumped(self, factor: float) -> Calibration:
        """After the server refused a request our count said would fit."""
        return Calibration(
            round(self.ratio * factor, 6), self.samples, self.last_estimated, self.last_reported
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "samples": self.samples,
            "last_estimated": self.last_estimated,
            "last_reported": self.last_reported,
        }

    @staticmethod
    def from_dict(data: dict[str, Any] | None) -> Calibration:
        if not data:
            return Calibration()
        return Calibration(
            ratio=float(data.get("ratio", 1.0)),
            samples=int(data.get("samples", 0)),
            last_estimated=data.get("last_estimated"),
            last_reported=data.get("last_reported"),
        )
