"""Shared pieces of the contract tests: the per-engine store case and small builders."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from tether import types
from tether.store import Claim, Store, open_store

StoreBody = Callable[[Store], Awaitable[None]]


@dataclass(frozen=True)
class StoreCase:
    """One engine's fresh store; ``run`` may be called again to reopen the same data."""

    engine: str
    url: str

    def run(self, body: StoreBody) -> None:
        async def main() -> None:
            store = open_store(self.url)
            await store.open()
            try:
                await body(store)
            finally:
                await store.close()

        asyncio.run(main())

    def raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside tether (``?`` placeholders on both engines), to look
        at or rewrite rows as stored; committed at once."""
        if self.engine == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                found = conn.execute(sql, tuple(params)).fetchall()
                conn.commit()
                return found
            finally:
                conn.close()
        with psycopg.connect(self.url, autocommit=True) as pconn:
            cur = pconn.execute(sql.replace("?", "%s").encode(), tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []


async def submit(
    store: Store,
    *,
    tenant: str = "acme",
    agent: str = "agent",
    input: str = "hello",
    session_id: str | None = None,
    idempotency_key: str | None = None,
) -> types.TaskRecord:
    return await store.submit_task(
        types.NewTask(
            tenant=tenant,
            agent=agent,
            input=input,
            session_id=session_id,
            idempotency_key=idempotency_key,
        )
    )


async def claim(
    store: Store,
    worker: str = "w1",
    *,
    task_id: str | None = None,
    agents: Collection[str] | None = None,
) -> Claim:
    got = await store.claim_task(worker, lease_ttl=60.0, task_id=task_id, agents=agents)
    assert got is not None, f"{worker} found nothing to claim"
    return got


def step(task_id: str, index: int, *, output: object = None, name: str = "m") -> types.StepRecord:
    return types.StepRecord(
        task_id=task_id,
        index=index,
        kind="model",
        name=name,
        fingerprint=f"fp-{index}",
        status="completed",
        output=output if output is not None else {"index": index},
        started_at=1.0,
        finished_at=2.0,
        worker="w1",
        usage=types.Usage(prompt_tokens=10, completion_tokens=2),
    )


def commit(
    lease: types.Lease,
    index: int,
    *messages: str,
    state: dict[str, object] | None = None,
    events: tuple[types.NewEvent, ...] = (),
) -> types.StepCommit:
    return types.StepCommit(
        lease=lease,
        step=step(lease.task_id, index),
        messages=tuple(types.Message(role="assistant", content=m) for m in messages),
        session_state=state,
        events=events,
    )
