"""A LangGraph graph run as a tether task, offline: ``research`` drafts notes, ``answer``
replies from them. Each node is a step; the thread is the tether session.

    tether run examples/langgraph_graph.py:graph "what is fencing?"
    tether worker examples/langgraph_graph.py:graph --store postgresql://…   # many workers

``python examples/langgraph_graph.py`` runs the same graph with ``TetherSaver`` as a
plain LangGraph checkpointer, no tether task involved.
"""

from __future__ import annotations

import sys
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph

from tether.integrations.langgraph import TetherSaver


class Research(MessagesState):
    notes: list[str]


def research(state: Research) -> dict[str, Any]:
    question = str(state["messages"][-1].content)
    return {"notes": [f"'{question}' has {len(question.split())} words"]}


def answer(state: Research) -> dict[str, Any]:
    turns = sum(1 for m in state["messages"] if m.type == "human")
    return {"messages": [AIMessage(content=f"turn {turns}: {'; '.join(state['notes'])}")]}


builder = StateGraph(Research)
builder.add_node("research", research)
builder.add_node("answer", answer)
builder.add_edge(START, "research")
builder.add_edge("research", "answer")
builder.add_edge("answer", END)
# A graph registers under its name: give it one (LangGraph's default is "LangGraph").
graph = builder.compile(name="research")


def main(url: str) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "example"}}
    with TetherSaver.from_conn_string(url) as saver:
        app = builder.compile(checkpointer=saver, name="research")
        for question in ("what is a lease?", "and fencing?"):
            result = app.invoke(Research(messages=[HumanMessage(question)], notes=[]), config)
            print(result["messages"][-1].content)
        print(f"{len(list(saver.list(config)))} checkpoints in thread 'example'")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///langgraph-example.db")
