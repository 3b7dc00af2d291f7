"""Compiled LangGraph graphs the LangGraph tests run as tether tasks, in-process and in
real ``tether worker`` processes (named by spec: ``langgraph_graphs.py:fanout``).

Their nodes tell the test what happened through files in ``$TETHER_TEST_GRAPH_DIR``:
every node appends ``start <node> <worker>`` to ``runs.log`` when it begins. ``slow``
hangs while ``hang-<worker>`` exists (after creating ``entered-<worker>``), until a
``release`` file appears: the test kills, stops or releases the worker meanwhile.
"""

from __future__ import annotations

import operator
import os
import time
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


def _dir() -> Path | None:
    where = os.environ.get("TETHER_TEST_GRAPH_DIR")
    return Path(where) if where else None


def _worker() -> str:
    return os.environ.get("TETHER_TEST_WORKER", "main")


def record(node: str) -> None:
    where = _dir()
    if where is None:
        return
    with (where / "runs.log").open("a") as log:
        log.write(f"start {node} {_worker()}\n")
        log.flush()
        os.fsync(log.fileno())


def node_runs(where: Path) -> list[str]:
    """The node names in ``runs.log``, one per execution, in order."""
    log = where / "runs.log"
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.strip()]


# ---- a MessagesState chat graph ------------------------------------------------------


def think(state: MessagesState) -> dict[str, Any]:
    record("think")
    asked = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"thinking about {asked}")]}


def answer(state: MessagesState) -> dict[str, Any]:
    record("answer")
    turns = sum(1 for m in state["messages"] if m.type == "human")
    asked = next(m.content for m in reversed(state["messages"]) if m.type == "human")
    return {"messages": [AIMessage(content=f"answer to {asked} (turn {turns})")]}


_chat = StateGraph(MessagesState)
_chat.add_node("think", think)
_chat.add_node("answer", answer)
_chat.add_edge(START, "think")
_chat.add_edge("think", "answer")
_chat.add_edge("answer", END)
chat = _chat.compile(name="chat")

unnamed = _chat.compile()


# ---- a fan-out graph: two nodes in one superstep -------------------------------------


class FanState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    done: Annotated[list[str], operator.add]


def prepare(state: FanState) -> dict[str, Any]:
    record("prepare")
    return {"done": ["prepare"]}


def fast(state: FanState) -> dict[str, Any]:
    record("fast")
    return {"done": ["fast"]}


def slow(state: FanState) -> dict[str, Any]:
    record("slow")
    where = _dir()
    if where is not None and (where / f"hang-{_worker()}").exists():
        (where / f"entered-{_worker()}").touch()
        while not (where / "release").exists():
            time.sleep(0.02)
    return {"done": ["slow"]}


def finish(state: FanState) -> dict[str, Any]:
    record("finish")
    done = ",".join(sorted(state["done"]))
    return {"messages": [AIMessage(content=f"finished {done}")]}


_fan = StateGraph(FanState)
for _name, _fn in (("prepare", prepare), ("fast", fast), ("slow", slow), ("finish", finish)):
    _fan.add_node(_name, _fn)
_fan.add_edge(START, "prepare")
_fan.add_edge("prepare", "fast")
_fan.add_edge("prepare", "slow")
_fan.add_edge(["fast", "slow"], "finish")
_fan.add_edge("finish", END)
fanout = _fan.compile(name="fanout")


# ---- a relay graph: a loop of short nodes, for runs killed at any moment ---------------


class RelayState(MessagesState):
    hops: int


def begin(state: RelayState) -> dict[str, Any]:
    record("begin")
    return {"hops": 0}


def hop(state: RelayState) -> dict[str, Any]:
    record("hop")
    time.sleep(0.05)
    return {"hops": state["hops"] + 1}


def again(state: RelayState) -> str:
    return "hop" if state["hops"] < HOPS else "reply"


def reply(state: RelayState) -> dict[str, Any]:
    record("reply")
    turns = sum(1 for m in state["messages"] if m.type == "human")
    return {"messages": [AIMessage(content=f"turn {turns}: {state['hops']} hops")]}


HOPS = 6
_relay = StateGraph(RelayState)
_relay.add_node("begin", begin)
_relay.add_node("hop", hop)
_relay.add_node("reply", reply)
_relay.add_edge(START, "begin")
_relay.add_edge("begin", "hop")
_relay.add_conditional_edges("hop", again, ["hop", "reply"])
_relay.add_edge("reply", END)
relay = _relay.compile(name="relay")
