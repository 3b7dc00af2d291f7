"""The tool calls of one turn run concurrently; a SIGKILL mid-turn re-runs only the
unfinished one, and the session holds the results in the model's order. The agent also
forces its first turn's tool choice and answers with structured output, so all three
survive the kill.

A real `tether run` child gets one turn with three calls. Effect 1 hangs; effects 2 and 3
finish and commit meanwhile (which only concurrency allows), with their messages held
back because effect 1's result comes first. The child is SIGKILLed; a `tether resume`
runs effect 1 again and is killed in turn while it waits for the model's answer; a last
`tether resume` replays the whole turn and finishes the task. Effect 1 ran twice under
one key, effects 2 and 3 once, each under the index the model's order gave it, and the
history is the uninterrupted one.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from test_kill_points import base_env, history, ledger, tether, wait_until

from tether.models.scripted import ScriptedModel, reply_index
from tether.testing import StandInModelServer
from tether.types import ModelRequest

HERE = Path(__file__).parent
SPEC = f"{HERE / 'parallel_workload.py'}:runtime"
SCRIPT = [
    ScriptedModel.calls([ScriptedModel.call("effect", n=n) for n in (1, 2, 3)]),
    '{"numbers": [1, 2, 3]}',
]


def steps(db: Path, task_id: str) -> dict[int, tuple[str, tuple[int, ...]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT idx, kind, message_seqs FROM steps WHERE task_id = ?", (task_id,)
        ).fetchall()
    return {idx: (kind, tuple(json.loads(seqs))) for idx, kind, seqs in rows}


def roles(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM messages ORDER BY seq").fetchall()
    return [json.loads(p).get("message", json.loads(p))["role"] for (p,) in rows]


class HeldAnswer:
    """Answers like ScriptedModel(SCRIPT); while ``hold`` is set, the structured answer's
    request waits (a slow model) until the test has killed the child asking for it."""

    def __init__(self) -> None:
        self.model = ScriptedModel(SCRIPT)
        self.hold = threading.Event()
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: ModelRequest) -> Any:
        if self.hold.is_set() and reply_index(request.messages) == 1:
            self.in_flight.set()
            self.release.wait(60)
        return self.model._choose(request)


def test_sigkill_mid_turn_reruns_only_the_unfinished_call(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    script = HeldAnswer()
    with StandInModelServer(script) as srv:
        env = base_env(tmp_path, srv.base_url, "hold")
        child = tether(["run", SPEC, "go", "--store", store], env)
        task: list[str] = []

        def two_and_three_committed() -> bool:
            try:
                if not task:
                    with sqlite3.connect(db) as conn:
                        row = conn.execute("SELECT id FROM tasks").fetchone()
                    task.extend(row or ())
                return bool(task) and {2, 3} <= set(steps(db, task[0]))
            except sqlite3.OperationalError:  # the child is still creating the store
                return False

        wait_until(two_and_three_committed, child)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        task_id = task[0]

        before = steps(db, task_id)
        assert set(before) == {0, 2, 3}  # the model turn, effects 2 and 3; effect 1 ran
        assert before[2][1] == before[3][1] == ()  # their messages wait for effect 1's
        assert roles(db) == ["user", "assistant"]

        # Resume; kill it again while it waits for the answer after the tool turn, so the
        # last run replays the whole turn (effect 1's commit holds all three results).
        script.hold.set()
        again = tether(["resume", task_id, "--store", store], {**env, "KILL_MODE": "none"})
        wait_until(script.in_flight.is_set, again)
        again.send_signal(signal.SIGKILL)
        again.communicate(timeout=30)
        script.hold.clear()
        script.release.set()
        assert roles(db) == ["user", "assistant", "tool", "tool", "tool"]

        resumed = tether(["resume", task_id, "--store", store], {**env, "KILL_MODE": "none"})
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert json.loads(out) == {"numbers": [1, 2, 3]}
        first, second = srv.requests[0], srv.requests[-1]

    starts = Counter(e["key"] for e in ledger(tmp_path))
    assert starts == {f"{task_id}:1": 2, f"{task_id}:2": 1, f"{task_id}:3": 1}
    by_n = {e["n"]: e["key"] for e in ledger(tmp_path)}
    assert by_n == {n: f"{task_id}:{n}" for n in (1, 2, 3)}  # indices in the model's order

    after = steps(db, task_id)
    assert sorted(after) == [0, 1, 2, 3, 4]
    assert after[1][1] == (3, 4, 5)  # effect 1's commit appended all three, in order
    rows = history(db, task_id)
    assert [r[1] for r in rows] == ["user", "assistant", "tool", "tool", "tool", "assistant"]
    assert [r[2] for r in rows[2:5]] == [f"effect {n} under <task>:{n}" for n in (1, 2, 3)]
    calls = rows[1][3]
    assert [r[4] for r in rows[2:5]] == [c[0] for c in calls]  # results follow the calls
    assert first["tool_choice"] == "required" and "tool_choice" not in second
    assert first["response_format"]["json_schema"]["name"] == "Recorded"
