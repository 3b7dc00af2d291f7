"""A worker killed right after a summarize step committed: the resumed task replays
the summary from the journal, it does not ask the model again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import context_support as support

from tether import ContextPolicy, Runtime
from tether.observe import events
from tether.testing import StandInModelServer

WINDOW = 2048
HERE = Path(__file__).parent

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {here!r})
    import context_support as support
    from tether import ContextPolicy, Runtime

    class KillAfterSummary:
        def on_event(self, event):
            if event.name == "step.completed" and event.step_kind == "summarize":
                print("killed in", event.task_id, "after step", event.step, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    agent = support.make_agent(sys.argv[1], {window}, ContextPolicy(strategy="summarize"))
    with Runtime(store=sys.argv[2], worker_id="crashy", observers=[KillAfterSummary()]) as rt:
        rt.register(agent)
        session = None
        for turn in range(1, 200):
            task = rt.submit("recorder", f"turn {{turn}}", session=session)
            session = task.session_id
            assert rt.run(task.id).status == "completed"
    """
)


def test_summary_replays_after_a_kill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE), window=WINDOW))
    seen = support.Collect()
    with StandInModelServer(support.conversation, context_window=WINDOW) as server:
        child = subprocess.run(
            [sys.executable, str(script), server.base_url, url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(HERE)},
        )
        assert child.returncode == -9, child.stderr
        task_id = child.stdout.split()[2]
        bodies_at_kill = server.requests
        assert _summary_requests(server) >= 1

        agent = support.make_agent(server.base_url, WINDOW, ContextPolicy(strategy="summarize"))
        with Runtime(store=url, worker_id="crashy", observers=[seen]) as runtime:
            runtime.register(agent)
            before = runtime.run_on_store(lambda s: s.get_task(task_id))
            assert before.status == "running"
            state_at_kill = runtime.run_on_store(lambda s: s.get_session(before.session_id)).state
            result = runtime.run(task_id)
            assert result.status == "completed", result.error
            journal = runtime.run_on_store(lambda s: s.load_journal(task_id))
            state = runtime.run_on_store(lambda s: s.get_session(before.session_id)).state
        after = server.requests[len(bodies_at_kill) :]

    killed_at = int(child.stdout.split()[-1])
    replayed = [e.step for e in seen.named(events.STEP_REPLAYED) if e.step_kind == "summarize"]
    assert replayed == [killed_at]
    ran_after = [s.index for s in journal if s.kind == "summarize" and s.index > killed_at]
    resumed_summaries = [b for b in after if support.is_summary_request(support.wire_request(b))]
    # the summary committed before the kill is not asked for again
    assert len(resumed_summaries) == len(ran_after)
    assert state["summary"]["sources"][0][0] == 1
    assert state["summary"]["generation"] == state_at_kill["summary"]["generation"] + len(ran_after)
    # this conversation's first fold takes two summariser requests; the kill fell
    # between them, so the resumed task asks only for the second, on the replayed summary
    assert ran_after == [killed_at + 1]
    assert state_at_kill["summary"]["text"] in resumed_summaries[0]["messages"][-1]["content"]


def _summary_requests(server: StandInModelServer) -> int:
    return sum(support.is_summary_request(support.wire_request(b)) for b in server.requests)
