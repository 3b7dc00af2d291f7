"""LangGraph on tether: ``TetherSaver``, a checkpointer on tether's store, and compiled
graphs run as tether tasks (``workflow_for``), one writer per thread.

``TetherSaver(url)`` works on its own, as any LangGraph checkpointer. A compiled graph
given to ``Runtime.register`` (or named by a CLI spec) becomes a ``GraphWorkflow``: a
task of it runs the graph on the thread whose id is the tether session id, with a
saver fenced by the task's lease (see ``graph``).
"""

from __future__ import annotations

from tether.integrations.langgraph.graph import GraphWorkflow, workflow_for
from tether.integrations.langgraph.saver import TetherSaver

__all__ = ["GraphWorkflow", "TetherSaver", "workflow_for"]
