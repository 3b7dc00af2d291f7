"""Release 1 of the ``triage`` agent."""

from __future__ import annotations

from versioned_parts import make_record, make_script

from tether.agent import Agent
from tether.models.scripted import ScriptedModel

INSTRUCTIONS = "Count as asked, one record call per number."

triage = Agent(
    name="triage",
    model=ScriptedModel(make_script("v1")),
    instructions=INSTRUCTIONS,
    tools=[make_record("v1")],
)
