"""What the routes share: the store, the registered agents, the metrics, the lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fastapi import Request

from tether.execution.runner import Workflow
from tether.observe.metrics import Metrics
from tether.server.config import ServerConfig
from tether.server.lifecycle import Lifecycle
from tether.server.stream_slots import StreamSlots
from tether.store.base import Store


@dataclass(slots=True)
class ServerState:
    store: Store
    agents: frozenset[str]
    """Agent and workflow names this server accepts sessions for."""
    config: ServerConfig
    specs: Mapping[str, str] = field(default_factory=dict)
    """Where each agent was loaded from, recorded with its tasks (``tether resume``)."""
    metrics: Metrics = field(default_factory=Metrics)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    on_submit: Callable[[], None] = lambda: None
    """Called after a task is queued: embedded workers look for work at once."""
    saturated: Callable[[], bool] = lambda: False
    """True while an embedded worker claims nothing: its sync tool threads are all abandoned."""
    local_workers: Callable[[], list[str]] = lambda: []
    """Ids of the workers embedded in this process (the console shows their memory)."""
    workflows: Mapping[str, Workflow] = field(default_factory=dict)
    """The agents and workflows themselves (an input that can never fit is refused)."""
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(32))
    """Event streams open per API key (``config.sse_max_streams_per_key`` of them)."""


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.tether
    return state
