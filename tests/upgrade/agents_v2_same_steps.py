"""Release 2 of ``triage`` that keeps its steps: the tool's body and the final answer
changed, but every request a recorded step made is made again the same way, so a task
release 1 started replays its journal and carries on."""

from __future__ import annotations

from agents_v1 import INSTRUCTIONS
from versioned_parts import make_record, make_script

from tether.agent import Agent
from tether.models.scripted import ScriptedModel

triage = Agent(
    name="triage",
    model=ScriptedModel(make_script("v2")),
    instructions=INSTRUCTIONS,
    tools=[make_record("v2")],
)
