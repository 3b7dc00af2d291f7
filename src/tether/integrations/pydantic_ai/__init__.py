"""Pydantic AI agents as tether tasks: add ``TetherDurability`` and register the agent.

```python
from pydantic_ai import Agent
from tether.integrations.pydantic_ai import TetherDurability

agent = Agent("openai:gpt-5", name="support", capabilities=[TetherDurability()])
runtime.register(agent)        # or: tether run app.py:agent "…"
```

Every durable unit Pydantic AI's builder routes (model requests, tool validation and
calls, MCP calls, compactions, capability operations) is one journaled tether step;
the session is the conversation. Importing this module imports Pydantic AI (the
``pydantic-ai`` extra).
"""

from __future__ import annotations

from tether.integrations.pydantic_ai._capability import TetherDurability
from tether.integrations.pydantic_ai._workflow import PydanticAIWorkflow, workflow_for

__all__ = ["PydanticAIWorkflow", "TetherDurability", "workflow_for"]
