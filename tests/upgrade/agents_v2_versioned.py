"""Release 2 done right: ``triage`` stays exactly as release 1 shipped it, so tasks it
started finish on their recorded path, and the changed agent is ``triage-v2``, where
new submissions go."""

from __future__ import annotations

from agents_v1 import triage
from versioned_parts import make_record, make_script

from tether.agent import Agent
from tether.models.scripted import ScriptedModel

triage_v2 = Agent(
    name="triage-v2",
    model=ScriptedModel(make_script("v2")),
    instructions="Count as asked, and be brief about it.",
    tools=[make_record("v2")],
)

__all__ = ["triage", "triage_v2"]
