"""Tools: ``@tool`` turns a typed, documented function into a schema the model sees.

The JSON schema comes from the type hints (through pydantic) and the docstring. A
``ctx: ToolContext`` parameter is optional and never part of the schema; it gives
the tool its idempotency key, stable across re-runs of the same step, so the
tool's own side effects can be deduplicated.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, overload

import pydantic

from tether import errors, types
from tether.retry import RetryPolicy

InThread = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking call in a thread and awaits its result."""


@dataclass(slots=True)
class ToolContext:
    """What a running tool knows about the step it runs in."""

    task_id: str
    session_id: str
    tenant: str
    step_index: int
    attempt: int
    _beat: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def idempotency_key(self) -> str:
        """``"{task_id}:{step_index}"``: identical every time this step runs."""
        return f"{self.task_id}:{self.step_index}"

    def heartbeat(self) -> None:
        """Report liveness; a tool that reports is not timed out while it does."""
        self._beat()


_running: contextvars.ContextVar[ToolContext | None] = contextvars.ContextVar(
    "tether_running_step", default=None
)


def current_step() -> ToolContext:
    """The running step's ``ToolContext``: for code tether runs inside a step without
    handing it a ``ctx`` (a Pydantic AI or Agents SDK tool), to deduplicate its side
    effects by ``idempotency_key`` and to ``heartbeat()``."""
    ctx = _running.get()
    if ctx is None:
        raise errors.NotInStep(
            "tether.current_step() was called outside a running step; call it from a tool "
            "or step function that a tether task runs"
        )
    return ctx


class running_step:
    """Make ``ctx`` what ``current_step()`` returns while the block runs (this task and
    the tasks and threads it starts, which copy the context). A class rather than a
    generator context manager: every step enters one."""

    __slots__ = ("_ctx", "_token")

    def __init__(self, ctx: ToolContext) -> None:
        self._ctx = ctx

    def __enter__(self) -> ToolContext:
        self._token = _running.set(self._ctx)
        return self._ctx

    def __exit__(self, *exc: object) -> None:
        _running.reset(self._token)


class Tool:
    """A function the model can call, with its schema and run settings."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        heartbeat_timeout: float | None = None,
        requires_approval: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.description = (description or inspect.getdoc(fn) or "").strip()
        self.retry = retry
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.requires_approval = requires_approval
        """The agent asks a person before each call (``execution.approvals``)."""
        self.is_async = inspect.iscoroutinefunction(fn)
        self._ctx_param, self._args_model = _arguments_model(fn, self.name)
        schema = self._args_model.model_json_schema()
        schema.pop("title", None)
        self.parameters: dict[str, Any] = schema

    @property
    def spec(self) -> types.ToolSpec:
        return types.ToolSpec(self.name, self.description, self.parameters)

    def parse_arguments(self, raw: str | dict[str, Any]) -> dict[str, Any]:
        """Validate the model's arguments; ``InvalidToolArguments`` says what is wrong."""
        if isinstance(raw, str):
            try:
                data = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise errors.InvalidToolArguments(
                    f"arguments for tool {self.name!r} are not valid JSON ({exc.msg} at "
                    f"position {exc.pos}); send a JSON object matching the tool's schema"
                ) from exc
        else:
            data = raw
        if not isinstance(data, dict):
            raise errors.InvalidToolArguments(
                f"arguments for tool {self.name!r} must be a JSON object, got {type(data).__name__}"
            )
        try:
            parsed = self._args_model.model_validate(data)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise errors.InvalidToolArguments(
                f"arguments for tool {self.name!r} do not match its schema: {problems}"
            ) from exc
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}

    async def invoke(
        self,
        arguments: dict[str, Any],
        ctx: ToolContext,
        *,
        in_thread: InThread | None = None,
    ) -> Any:
        """Run the tool; a sync tool runs in a thread so the event loop keeps going:
        ``in_thread`` (a worker's own bounded pool), else asyncio's default one."""
        kwargs = dict(arguments)
        if self._ctx_param is not None:
            kwargs[self._ctx_param] = ctx
        if self.is_async:
            return await typing.cast(Awaitable[Any], self.fn(**kwargs))
        if in_thread is not None:
            return await in_thread(functools.partial(self.fn, **kwargs))
        return await asyncio.to_thread(self.fn, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the tool object calls the function, so tools stay testable as functions."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _arguments_model(
    fn: Callable[..., Any], name: str
) -> tuple[str | None, type[pydantic.BaseModel]]:
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise errors.InvalidInput(
            f"cannot read the type hints of tool {name!r}: {exc}; define the types at module level"
        ) from exc
    ctx_param: str | None = None
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        hint = hints.get(pname, Any)
        if hint is ToolContext:
            ctx_param = pname
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise errors.InvalidInput(f"tool {name!r} may not take *args or **kwargs")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (hint, default)
    model = pydantic.create_model(
        f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    return ctx_param, typing.cast(type[pydantic.BaseModel], model)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    heartbeat_timeout: float | None = None,
    requires_approval: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    heartbeat_timeout: float | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool: ``@tool`` or ``@tool(retry=RetryPolicy(...), timeout=30)``;
    ``requires_approval=True``: the agent waits for a person's yes before each call."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(
            f,
            name=name,
            description=description,
            retry=retry,
            timeout=timeout,
            heartbeat_timeout=heartbeat_timeout,
            requires_approval=requires_approval,
        )

    return wrap(fn) if fn is not None else wrap


def render_result(value: Any) -> str:
    """What the model reads back from a tool: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
