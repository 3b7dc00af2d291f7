"""Loading what a SPEC names: ``path/to/file.py:name`` or ``module:name``.

A spec may name an ``Agent``, a durable function made with ``@runtime.workflow``,
or a ``Runtime`` (all its workflows). Without ``:name`` the module must hold
exactly one of them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from tether import errors, integrations
from tether.agent import Agent
from tether.execution.runner import FunctionWorkflow, Workflow
from tether.runtime import Runtime


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    spec: str
    """The spec in a form that works from any directory (file paths made absolute)."""
    workflows: tuple[Workflow, ...]
    runtime: Runtime | None = None


def load_spec(spec: str) -> LoadedSpec:
    target, _, attr = spec.partition(":")
    if not target.strip():
        raise errors.InvalidInput(
            f"spec {spec!r} names no file or module: use path/to/file.py:name or module:name"
        )
    if target.endswith(".py") or "/" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise errors.InvalidInput(f"spec {spec!r}: no such file {path}")
        module_name = "tether_spec_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise errors.InvalidInput(f"spec {spec!r}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            sys.path.insert(0, str(path.parent))
            try:
                loader_spec.loader.exec_module(module)
            except Exception:
                del sys.modules[module_name]
                raise
        canonical = f"{path}:{attr}" if attr else str(path)
    else:
        try:
            module = importlib.import_module(target)
        except (ImportError, ValueError) as exc:
            raise errors.InvalidInput(
                f"spec {spec!r}: cannot import module {target!r}: {exc}"
            ) from exc
        canonical = spec
    if attr:
        try:
            obj = getattr(module, attr)
        except AttributeError as exc:
            raise errors.InvalidInput(f"spec {spec!r}: {target} has no attribute {attr!r}") from exc
        return _from_object(obj, canonical, spec)
    found = [v for v in vars(module).values() if _runnable(v)]
    runtimes = [v for v in found if isinstance(v, Runtime)]
    if len(runtimes) == 1:
        return _from_object(runtimes[0], canonical, spec)
    if len(found) != 1:
        raise errors.InvalidInput(
            f"spec {spec!r} names a module with {len(found)} agents/runtimes; "
            "say which one with path.py:name"
        )
    return _from_object(found[0], canonical, spec)


def _runnable(obj: object) -> bool:
    """An agent, workflow or runtime a spec may name: tether's own kinds, or another
    framework's agent that its integration accepts."""
    if isinstance(obj, Agent | Runtime | FunctionWorkflow):
        return True
    return type(obj).__module__.partition(".")[0] in integrations.ADAPTERS and (
        integrations.workflow_for(obj) is not None
    )


def _from_object(obj: object, canonical: str, spec: str) -> LoadedSpec:
    if isinstance(obj, Runtime):
        return LoadedSpec(canonical, tuple(obj.workflows.values()), obj)
    if isinstance(obj, Agent | FunctionWorkflow):
        return LoadedSpec(canonical, (obj,))
    adapted = integrations.workflow_for(obj)
    if adapted is not None:
        return LoadedSpec(canonical, (adapted,))
    raise errors.InvalidInput(
        f"spec {spec!r} names a {type(obj).__name__}; it must name an Agent, a workflow, a "
        "Runtime, or an agent of Pydantic AI, the OpenAI Agents SDK or LangGraph"
    )


def build_runtime(specs: list[str], store: str | None, **kwargs: object) -> Runtime:
    """One Runtime holding every workflow the specs name. ``store`` wins over a spec
    Runtime's own store; without it a spec Runtime's store is used."""
    loaded = [load_spec(s) for s in specs]
    url = store
    if url is None:
        for item in loaded:
            if item.runtime is not None:
                url = item.runtime.store_url
                break
    runtime = Runtime(url, **kwargs)  # type: ignore[arg-type]
    for item in loaded:
        for wf in item.workflows:
            runtime.register(wf, spec=item.spec)
        if item.runtime is not None:
            runtime.observers.add(item.runtime.observers)
    return runtime
