"""Release 2 of ``triage`` that changes its steps in place (new instructions under the
same name): a task release 1 started cannot replay its journal. Do not do this; see
``agents_v2_versioned.py`` and docs/upgrading.md."""

from __future__ import annotations

from versioned_parts import make_record, make_script

from tether.agent import Agent
from tether.models.scripted import ScriptedModel

triage = Agent(
    name="triage",
    model=ScriptedModel(make_script("v2")),
    instructions="Count as asked, and be brief about it.",
    tools=[make_record("v2")],
)
