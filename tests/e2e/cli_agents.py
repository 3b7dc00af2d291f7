"""Agents the CLI tests run through `tether` subprocesses."""

from __future__ import annotations

from tether import Agent, ScriptedModel, tool


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


echo = Agent(
    "echo",
    ScriptedModel(
        [ScriptedModel.call("shout", text="hi"), ScriptedModel.call("shout", text="yo"), "ok"]
    ),
    tools=[shout],
)

stubborn = Agent(
    "stubborn", ScriptedModel(ScriptedModel.call("shout", text="again")), tools=[shout], max_steps=2
)
