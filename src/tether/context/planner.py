"""``ContextPlanner``: one task's view of its session's context, kept within budget.

Before each model call the agent asks ``prepare(live)`` for the request's messages.
It counts the request (calibrated by what the model reported before), fires
``context.pressure`` when the request crosses ``warn_at`` of the budget, and when
the request would not fit it compacts by the policy's strategy, each compaction a
journaled step whose session state (the ``Ledger``) is committed with it:

- ``fail``: raise ``ContextBudgetExceeded``;
- ``summarize``: ``summarize`` steps fold the oldest units into the summary (a
  re-summarize step shortens the summary when it outgrows ``summary_tokens``);
- ``memory``: a ``context.memory`` step moves the oldest units into vector memory,
  and a ``context.recall`` step recalls the most relevant of them each turn.

Every compaction emits ``context.compacted`` with what moved. The package above
(the agent) supplies the journal, the completion callable and the memory access.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from tether import errors, types
from tether.context import counting, embedders, memory, summarize, truncation, window
from tether.context.count_cache import CachedCounter
from tether.context.ledger import Ledger, Summary
from tether.context.policy import Budget, ContextPolicy
from tether.context.window import Entry
from tether.observe import events

OVERFLOW_BUMP = 1.25
"""After the model server refused a request our count said fits, count 25% higher."""
MAX_ROUNDS = 8

Complete = Callable[[types.ModelRequest], Awaitable[types.ModelResponse]]


class Journal(Protocol):
    """The journaled-step service the agent lends the context planner."""

    @property
    def task_id(self) -> str: ...

    @property
    def replaying(self) -> bool:
        """Whether the next step is replayed from the journal."""
        ...

    async def step(
        self,
        kind: Literal["summarize", "custom"],
        name: str,
        inputs: Any,
        execute: Callable[[], Awaitable[dict[str, Any]]],
        state: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """Run ``execute`` once as a journaled step (or replay it); ``state`` maps its
        output to the session state committed with it."""
        ...

    def emit(self, name: str, **data: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request that fits, and how to record what the model then reports."""

    messages: tuple[types.Message, ...]
    tokens: int
    """The calibrated estimate of the prompt."""
    raw: int
    """The counter's estimate before calibration."""
    observe: Callable[[types.ModelResponse], dict[str, Any]]
    """The session state to commit with the model step that sends this request."""


class ContextPlanner:
    def __init__(
        self,
        *,
        policy: ContextPolicy,
        budget: Budget,
        system: Sequence[types.Message],
        tools: Sequence[types.ToolSpec],
        journal: Journal,
        session_state: dict[str, Any],
        complete: Complete,
        summarizer: str,
        memory_access: memory.MemoryAccess | None = None,
        counter: counting.TokenCounter | None = None,
        embedder: embedders.Embedder | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget
        self.system = tuple(system)
        self.tools = tuple(tools)
        self.journal = journal
        self.complete = complete
        self.summarizer = summarizer
        self.memory = memory_access
        self.counter = CachedCounter(counter or policy.make_counter())
        """Each message is counted once in this task run (see ``count_cache``)."""
        self._pinned_for: tuple[Summary | None, list[types.Message]] = (None, [])
        self.embedder = embedder or policy.make_embedder()
        self.start = Ledger.from_dict(session_state).for_task(journal.task_id)
        self.ledger = self.start
        self._start_record: dict[str, Any] | None = None
        if policy.strategy == "memory" and memory_access is None:
            raise errors.InvalidInput("the memory strategy needs the session's memory access")

    # ---- counting -------------------------------------------------------------------

    def count(self, messages: Sequence[types.Message]) -> int:
        return self.ledger.calibration.apply(self.counter.count(messages, self.tools))

    def count_request(self, request: types.ModelRequest) -> int:
        return self.ledger.calibration.apply(self.counter.count(request.messages, request.tools))

    def _cost(self, message: types.Message) -> int:
        return window.message_cost(self.count, message)

    def _pinned(self) -> list[types.Message]:
        """The summary message; the same object while the summary is the same, so that
        it is counted once."""
        s = self.ledger.summary
        if s is None:
            return []
        if self._pinned_for[0] is not s:
            self._pinned_for = (s, [window.summary_message(s.text, s.messages)])
        return list(self._pinned_for[1])

    def _summary_tokens_in_request(self) -> int:
        """What a summary of ``summary_tokens`` tokens adds to a request."""
        text = summarize.planned_text(self.budget.summary_tokens)
        return self._cost(window.summary_message(text, 0))

    def _recall_reserve(self, ledger: Ledger) -> int:
        """Tokens kept for recalled memories: with the memory strategy, or while the
        session has memories."""
        recalls = self.policy.strategy == "memory" or bool(ledger.memory)
        return self.budget.recall_tokens if recalls else 0

    def _commit(self, new: Ledger) -> dict[str, Any]:
        self.ledger = new
        if self._start_record is None:  # the same for every write of this task run
            self._start_record = self.start.start_record()
        return new.stamped(self.journal.task_id, self._start_record).to_dict()

    # ---- the request ----------------------------------------------------------------

    async def prepare(self, history: Sequence[Entry]) -> Prepared:
        """The messages of the next request, compacting first when they would not fit."""
        for _ in range(MAX_ROUNDS):
            live = [e for e in history if e.seq > self.ledger.folded_upto]
            head = [*self.system, *self._pinned()]
            recall_reserve = self.budget.recall_tokens if self.ledger.memory else 0
            tokens = self.count(head + [e.message for e in live]) + recall_reserve
            oversized = (
                self.policy.strategy == "summarize"
                and self.ledger.summary is not None
                and self._cost(self._pinned()[0]) > self._summary_tokens_in_request()
            )
            if tokens <= self.budget.budget and not oversized:
                break
            if self.policy.strategy == "fail":
                raise self._exceeded(tokens, "the policy's strategy is 'fail'")
            await self._compact(live, tokens, force=False)
        else:
            raise self._exceeded(tokens, f"{MAX_ROUNDS} compactions did not make it fit")
        if self.ledger.memory:
            head.append(await self._recall(live))
        messages = tuple(head + [e.message for e in live])
        raw = self.counter.count(messages, self.tools)
        tokens = self.ledger.calibration.apply(raw)
        if tokens > self.budget.budget:
            raise self._exceeded(tokens, "the recalled memories took more tokens than kept")
        pressure = tokens >= self.budget.warn_tokens
        if pressure and not self.ledger.pressure and not self.journal.replaying:
            self.journal.emit(
                events.CONTEXT_PRESSURE,
                tokens=tokens,
                limit=self.budget.budget,
                window=self.budget.window,
                utilisation=round(tokens / self.budget.budget, 4),
                warn_at=self.policy.warn_at,
            )
        base = self.ledger
        first = live[0].seq if live else base.folded_upto + 1

        def observe(response: types.ModelResponse) -> dict[str, Any]:
            reported = response.usage.prompt_tokens if response.usage else None
            calibration = base.calibration
            # A report far below the count is the server cutting the prompt (the model
            # step says so): learning from it would make every later count too low.
            check = truncation.Check(raw, self.policy.truncation_ratio)
            if reported and not check.suspected(reported):
                calibration = calibration.observe(raw, reported)
            last = {
                "estimated": tokens,
                "raw_estimate": raw,
                "reported": reported,
                "budget": self.budget.budget,
                "window": self.budget.window,
                "utilisation": round(tokens / self.budget.budget, 4),
                "request_from_seq": first,
                "request_messages": len(messages),
                "counter": self.counter.name,
            }
            return self._commit(
                replace(self.ledger, calibration=calibration, pressure=pressure, last=last)
            )

        return Prepared(messages=messages, tokens=tokens, raw=raw, observe=observe)

    async def recover(self, history: Sequence[Entry]) -> bool:
        """After the model server refused a request as too long: count higher from now
        on and compact once. False when nothing could be compacted (the caller fails)."""
        if self.policy.strategy == "fail":
            return False
        bumped = self.ledger.calibration.bumped(OVERFLOW_BUMP)
        self.ledger = replace(self.ledger, calibration=bumped)
        live = [e for e in history if e.seq > self.ledger.folded_upto]
        head = [*self.system, *self._pinned()]
        tokens = self.count(head + [e.message for e in live])
        return await self._compact(live, tokens, force=True)

    def _exceeded(self, tokens: int, why: str) -> errors.ContextBudgetExceeded:
        b = self.budget
        return errors.ContextBudgetExceeded(
            f"the next request needs about {tokens} prompt tokens but the budget is "
            f"{b.budget} (window {b.window} − {b.reserve_output} reserved for the answer) "
            f"and {why}; use ContextPolicy(strategy='summarize' or 'memory'), a larger "
            "window, or a smaller reserve_output"
        )

    # ---- compaction -----------------------------------------------------------------

    async def _compact(self, live: Sequence[Entry], tokens: int, *, force: bool) -> bool:
        groups = window.units(live)
        fixed = self.count(self.system)
        if self.policy.strategy == "summarize":
            fixed += self._summary_tokens_in_request()
        elif self.ledger.summary is not None:
            fixed += self._cost(self._pinned()[0])
        fixed += self._recall_reserve(self.ledger)
        cut = window.choose_cut(
            [sum(self._cost(e.message) for e in g) for g in groups],
            [len(g) for g in groups],
            fixed,
            budget=self.budget.budget,
            target=self.budget.target_tokens,
            keep_recent=self.policy.keep_recent,
        )
        if cut is None:
            newest = groups[-1] if groups else []
            raise self._exceeded(
                tokens,
                f"the newest {len(newest)} message(s) (from seq "
                f"{newest[0].seq if newest else '?'}) do not fit even alone",
            )
        n = cut.units
        if n == 0 and force and len(groups) > 1:
            n = 1
        folded = groups[:n]
        if self.policy.strategy == "memory":
            if folded:
                await self._move([e for g in folded for e in g], live, tokens)
            return bool(folded)
        for chunk in summarize.chunks(
            folded, self.budget.summary_tokens, self.count_request, self._summariser_request_limit()
        ):
            await self._fold(chunk, live, tokens)
        summary = self.ledger.summary
        if (
            summary is not None
            and self._cost(self._pinned()[0]) > self._summary_tokens_in_request()
        ):
            await self._resummarize(live, tokens)
        return bool(folded)

    def _summariser_request_limit(self) -> int:
        """The most tokens one summariser request may take (the window less its answer)."""
        return self.budget.window - self.budget.summary_tokens

    def _after(self, ledger: Ledger, live: Sequence[Entry]) -> int:
        """The estimated request once ``ledger`` holds."""
        head = list(self.system)
        if ledger.summary:
            head.append(window.summary_message(ledger.summary.text, ledger.summary.messages))
        rest = [e.message for e in live if e.seq > ledger.folded_upto]
        extra = self.budget.recall_tokens if ledger.memory else 0
        return ledger.calibration.apply(self.counter.count([*head, *rest], self.tools)) + extra

    def _record(self, strategy: str, out: dict[str, Any]) -> dict[str, Any]:
        return {
            "strategy": strategy,
            "from": out["from"],
            "to": out["to"],
            "count": out["count"],
            "tokens_before": out["tokens_before"],
            "tokens_after": out["tokens_after"],
            "task_id": self.journal.task_id,
            "at": out["at"],
        }

    async def _summary_text(self, request: types.ModelRequest) -> types.ModelResponse:
        response = await self.complete(request)
        if response.finish_reason == "length":
            raise errors.OutputTruncated(
                f"the summary written by model {self.summarizer!r} was cut off at "
                f"max_tokens={request.max_tokens}; raise ContextPolicy(summary_tokens=…) "
                "or use a model that summarises more briefly",
                retryable=False,
            )
        if not (response.message.content or "").strip():
            raise errors.ModelProtocolError(
                f"model {self.summarizer!r} answered the summarisation request with no text; "
                "a scripted model must answer requests whose system prompt is "
                "tether.context.summarize.SUMMARY_INSTRUCTIONS with a summary"
            )
        return response

    async def _fold(self, entries: list[Entry], live: Sequence[Entry], tokens: int) -> None:
        start = self.ledger
        prior = start.summary.text if start.summary else None
        lines = summarize.lines_for(
            entries,
            prior,
            self.budget.summary_tokens,
            self.count_request,
            self._summariser_request_limit(),
        )
        request = summarize.fold_request(prior, lines, self.budget.summary_tokens)
        lo, hi = entries[0].seq, entries[-1].seq

        async def execute() -> dict[str, Any]:
            response = await self._summary_text(request)
            text = (response.message.content or "").strip()
            after = self._after(start.folded_into_summary(text, lo, hi), live)
            seqs = [e.seq for e in entries]
            self.journal.emit(
                events.CONTEXT_COMPACTED,
                strategy="summarize",
                messages=seqs,
                tokens_before=tokens,
                tokens_after=after,
                summary_tokens=self._cost(window.summary_message(text, 0)),
            )
            return {
                "summary": text,
                "from": lo,
                "to": hi,
                "count": len(entries),
                "messages": seqs,
                "tokens_before": tokens,
                "tokens_after": after,
                "usage": response.usage.to_dict() if response.usage else None,
                "at": types.now(),
            }

        def state(out: dict[str, Any]) -> dict[str, Any]:
            new = start.folded_into_summary(out["summary"], out["from"], out["to"])
            return self._commit(new.compacted(self._record("summarize", out)))

        await self.journal.step(
            "summarize",
            "summarize",
            {"model": self.summarizer, "request": request.to_dict(), "from": lo, "to": hi},
            execute,
            state,
        )

    async def _resummarize(self, live: Sequence[Entry], tokens: int) -> None:
        start = self.ledger
        assert start.summary is not None
        request = summarize.resummary_request(start.summary.text, self.budget.summary_tokens)
        if self.count_request(request) > self._summariser_request_limit():
            raise errors.ContextBudgetExceeded(
                f"the session summary ({len(start.summary.text)} characters) no longer fits a "
                "summarisation request; raise the context window"
            )

        async def execute() -> dict[str, Any]:
            response = await self._summary_text(request)
            text = (response.message.content or "").strip()
            after = self._after(start.resummarized(text), live)
            self.journal.emit(
                events.CONTEXT_COMPACTED,
                strategy="resummarize",
                messages=[],
                tokens_before=tokens,
                tokens_after=after,
                summary_tokens=self._cost(window.summary_message(text, 0)),
            )
            return {"summary": text, "tokens_before": tokens, "tokens_after": after,
                    "from": None, "to": None, "count": 0, "at": types.now()}  # fmt: skip

        def state(out: dict[str, Any]) -> dict[str, Any]:
            new = start.resummarized(out["summary"])
            return self._commit(new.compacted(self._record("resummarize", out)))

        await self.journal.step(
            "summarize",
            "resummarize",
            {"model": self.summarizer, "request": request.to_dict()},
            execute,
            state,
        )

    async def _move(self, entries: list[Entry], live: Sequence[Entry], tokens: int) -> None:
        assert self.memory is not None
        access = self.memory
        start = self.ledger
        items = [(e.seq, e.message.role, memory.memory_text(e)) for e in entries]
        lo, hi = entries[0].seq, entries[-1].seq

        async def execute() -> dict[str, Any]:
            vectors = await self.embedder.embed([text for _, _, text in items])
            if len(vectors) != len(items):
                raise errors.ModelProtocolError(
                    f"embedder {self.embedder.name!r} returned {len(vectors)} vectors for "
                    f"{len(items)} texts"
                )
            await access.add(
                [
                    memory.Memory(seq, role, text, tuple(vector))
                    for (seq, role, text), vector in zip(items, vectors, strict=True)
                ]
            )
            after = self._after(start.moved_to_memory(lo, hi), live)
            seqs = [seq for seq, _, _ in items]
            self.journal.emit(
                events.CONTEXT_COMPACTED,
                strategy="memory",
                messages=seqs,
                tokens_before=tokens,
                tokens_after=after,
            )
            return {
                "from": lo,
                "to": hi,
                "count": len(items),
                "messages": seqs,
                "tokens_before": tokens,
                "tokens_after": after,
                "embedder": self.embedder.name,
                "at": types.now(),
            }

        def state(out: dict[str, Any]) -> dict[str, Any]:
            new = start.moved_to_memory(out["from"], out["to"])
            return self._commit(new.compacted(self._record("memory", out)))

        await self.journal.step(
            "custom",
            "context.memory",
            {"embedder": self.embedder.name, "items": items},
            execute,
            state,
        )

    async def _recall(self, live: Sequence[Entry]) -> types.Message:
        assert self.memory is not None
        access = self.memory
        query = memory.query_text(live)
        moved = self.ledger.memory_messages
        recall_limit = self.budget.recall_tokens

        async def execute() -> dict[str, Any]:
            (vector,) = await self.embedder.embed([query])
            hits = await access.search(vector, self.policy.recall_k)
            kept: list[memory.Recalled] = []
            for item, score in hits:
                trial = [*kept, memory.Recalled(item.seq, item.role, item.text, score)]
                message = window.recall_message(moved, [(r.seq, r.role, r.text) for r in trial])
                if self._cost(message) > recall_limit:
                    continue
                kept = trial
            return {"hits": [r.to_dict() for r in kept]}

        out = await self.journal.step(
            "custom",
            "context.recall",
            {"embedder": self.embedder.name, "query": query, "k": self.policy.recall_k,
             "upto": self.ledger.folded_upto},
            execute,
            None,
        )  # fmt: skip
        recalled = [memory.Recalled.from_dict(h) for h in out["hits"]]
        return window.recall_message(moved, [(r.seq, r.role, r.text) for r in recalled])
