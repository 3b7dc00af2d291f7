"""Agents written with other frameworks, run as tether tasks.

Each framework has its own adapter module, which alone imports that framework (an
optional extra); this module imports none of them. ``workflow_for(obj)`` turns a
foreign agent object into a durable function (a ``Workflow``), or answers None when
``obj`` is not an agent of a framework tether knows.

An adapter module exposes ``workflow_for(obj: object) -> Workflow | None``: None for
objects of its framework that are not runnable agents (a tool, a model), a clear
``InvalidInput`` for an agent that cannot run durably as it is (and how to fix it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tether import errors

if TYPE_CHECKING:
    from tether.execution.runner import Workflow

# The top-level package a foreign object's class comes from -> (adapter module, extra).
ADAPTERS: dict[str, tuple[str, str]] = {
    "pydantic_ai": ("tether.integrations.pydantic_ai", "pydantic-ai"),
    "agents": ("tether.integrations.openai_agents", "openai-agents"),
    "langgraph": ("tether.integrations.langgraph", "langgraph"),
}


def workflow_for(obj: object) -> Workflow | None:
    """The durable function that runs ``obj``, an agent of another framework, or None."""
    root = type(obj).__module__.partition(".")[0]
    entry = ADAPTERS.get(root)
    if entry is None:
        return None
    module_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.MissingExtra(
            f"running a {root} agent needs tether's {extra!r} extra "
            f"(pip install 'tether[{extra}]'): {exc}"
        ) from exc
    adapted: Workflow | None = module.workflow_for(obj)
    return adapted
