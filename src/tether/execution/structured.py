"""Structured output: an agent whose answer must validate against a pydantic model.

Two ways to ask, chosen by the model (``OpenAIModel(structured_output=…)``):

- ``response_format``: the request carries the JSON schema (``ModelRequest.output_schema``)
  and the answer's text must be JSON that validates;
- a final-answer tool (``final_result``) whose parameters are the schema, for servers
  without ``response_format``: the model answers by calling it.

An answer that does not validate goes back to the model with the validation error (a
journaled user message, or the tool's error result), at most ``retries`` times; then
the task fails with ``OutputInvalid``. The task's output is the validated JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pydantic

from tether import errors, types
from tether.context.window import Entry
from tether.execution.context import Heartbeat, StepCodec, StepSpec, TaskRun
from tether.retry import NO_RETRY
from tether.tools import InThread, Tool, ToolContext

FINAL_TOOL = "final_result"
"""The final-answer tool's name."""


@dataclass(frozen=True, slots=True)
class Verdict:
    value: Any = None
    """The answer as JSON (``model_dump(mode="json")``) when it validated."""
    error: str | None = None


class FinalAnswerTool(Tool):
    """The tool the model calls to answer: its arguments are the output type's fields."""

    def __init__(self, output_type: type[pydantic.BaseModel]) -> None:
        self.fn = _accepted
        self.name = FINAL_TOOL
        self.description = (
            f"Give your final answer as a {output_type.__name__}; call this exactly once, "
            "when you are done."
        )
        self.retry = NO_RETRY
        self.timeout = None
        self.heartbeat_timeout = None
        self.requires_approval = False
        self.is_async = False
        self._ctx_param = None
        self._args_model = output_type
        self.parameters = output_schema(output_type)

    async def invoke(
        self, arguments: dict[str, Any], ctx: ToolContext, *, in_thread: InThread | None = None
    ) -> Any:
        return "Final answer accepted."


def _accepted() -> str:
    return "Final answer accepted."


def output_schema(output_type: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = output_type.model_json_schema()
    schema.pop("title", None)
    return schema


class OutputSpec:
    """What an agent's ``output_type`` asks of each request, and how answers are judged."""

    def __init__(
        self, output_type: type[pydantic.BaseModel], *, via_tool: bool, retries: int
    ) -> None:
        if retries < 0:
            raise errors.InvalidInput("output_retries must be 0 or more")
        self.type = output_type
        self.via_tool = via_tool
        self.retries = retries
        self.tool = FinalAnswerTool(output_type) if via_tool else None

    @property
    def request_schema(self) -> dict[str, Any] | None:
        """``ModelRequest.output_schema`` (None when the final-answer tool asks instead)."""
        if self.via_tool:
            return None
        return {"name": self.type.__name__, "schema": output_schema(self.type)}

    def judge(self, raw: str | None) -> Verdict:
        """Validate the answer's JSON text."""
        try:
            parsed = self.type.model_validate_json(raw or "")
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            return Verdict(error=problems)
        return Verdict(value=parsed.model_dump(mode="json"))

    def judge_turn(self, message: types.Message) -> Verdict | None:
        """The verdict on one model turn: None when it called other tools only (the
        loop goes on), else the verdict on its final answer."""
        if not self.via_tool:
            if message.tool_calls:
                return None
            return self.judge(message.content)
        finals = [c for c in message.tool_calls if c.name == FINAL_TOOL]
        if finals:
            return self.judge(finals[-1].arguments)
        if message.tool_calls:
            return None
        return Verdict(error=f"answer by calling the {FINAL_TOOL} tool, not with text")

    def give_up(self, tries: int, error: str, agent: str) -> errors.OutputInvalid:
        return errors.OutputInvalid(
            f"agent {agent!r}: {tries} answers did not validate as {self.type.__name__} "
            f"(last: {error}); change the instructions or the model, or raise output_retries"
        )


class Judge:
    """One task's answers judged in turn: counts the invalid ones and tells the model
    what was wrong, until ``retries`` are spent."""

    def __init__(self, spec: OutputSpec, agent: str) -> None:
        self.spec = spec
        self.agent = agent
        self.invalid = 0

    async def after_turn(
        self, ctx: TaskRun, message: types.Message, history: list[Entry]
    ) -> Verdict | None:
        """The valid answer of this turn, or None to go on (tools to run, or an invalid
        answer sent back, joining ``history``); ``OutputInvalid`` once retries are spent."""
        verdict = self.spec.judge_turn(message)
        if verdict is None or verdict.error is None:
            return verdict
        self.invalid += 1
        if self.invalid > self.spec.retries:
            raise self.spec.give_up(self.invalid, verdict.error, self.agent)
        if not message.tool_calls:  # a tool answer's error went back as its result
            index = ctx.step_index
            told = await tell(ctx, self.spec, verdict.error)
            history.append(Entry(ctx.appended_by(index)[-1], told))
        return None


async def tell(ctx: TaskRun, spec: OutputSpec, error: str) -> types.Message:
    """Send the validation error back to the model: a user message joining the session
    in its own journaled step (after a text answer; a tool answer's error is its result)."""
    text = (
        f"Your answer is not a valid {spec.type.__name__}: {error}. Answer again with JSON "
        f"matching this schema: {json.dumps(output_schema(spec.type))}"
    )

    async def execute(attempt: int, beat: Heartbeat) -> types.Message:
        return types.Message(role="user", content=text)

    step: StepSpec[types.Message] = StepSpec(
        "custom",
        "output.invalid",
        {"error": error},
        NO_RETRY,
        codec=StepCodec(
            encode=lambda m: m.to_dict(),
            decode=types.Message.from_dict,
            messages=lambda m: (m,),
        ),
    )
    return await ctx.run_step(step, execute)
