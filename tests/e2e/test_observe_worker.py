"""Observability end to end: real `tether worker --metrics-port` processes, scraped over HTTP.

One scenario (a module fixture) runs known tasks with injected faults through worker
``w0`` (a 429 then success, a tool that fails once retryably, a truncated answer, a
400, a stuck step), follows a running task's events from another process, SIGKILLs
``w0`` mid-tool and restarts it (it takes its lease back and replays), then freezes it
(SIGSTOP) until worker ``w1`` takes the task over, and thaws it so it loses its lease.
The tests assert the exact counters each process exposes, the JSON log lines, the
stored events, and the shipped alert rules against the scraped series.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tether import Runtime, types
from tether.observe import metrics
from tether.testing import Fault, StandInModelServer
from waiting import wait_until

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPEC = f"{HERE / 'observe_agents.py'}:agent"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
TENANT = "acme"
LEASE_TTL = 2.0

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# ---- helpers -----------------------------------------------------------------------


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    stderr: Path
    port: int = 0

    def text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def body(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def scrape(self) -> Scrape:
        body = self.body()
        out: Scrape = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_worker(name: str, store: str, tmp: Path, env: dict[str, str], n: int = 0) -> WorkerProc:
    stderr = tmp / f"{name}.{n}.stderr"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "worker", SPEC, "--worker-id", name,
             "--metrics-port", "0", "--concurrency", "1", "--lease-ttl", str(LEASE_TTL),
             "--poll", "0.05", "--store", store],
            stdout=subprocess.DEVNULL, stderr=sink, env=env,
        )  # fmt: skip
    w = WorkerProc(name, proc, stderr)

    def ready() -> bool:
        assert proc.poll() is None, f"worker {name} exited early:\n{w.text()}"
        return "ready" in w.text()

    wait_until(ready, what=f"worker {name} to start")
    found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", w.text())
    assert found, w.text()
    w.port = int(found.group(1))
    return w


def value(scrape: Scrape, name: str, **labels: str) -> float | None:
    return scrape.get((name, tuple(sorted(labels.items()))))


def series(scrape: Scrape, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """A metric's series that are not 0 (known label values are exported at 0 from the start)."""
    return {labels: v for (n, labels), v in scrape.items() if n == name and v != 0}


def total(scrape: Scrape, name: str) -> float:
    return sum(v for (n, _), v in scrape.items() if n == name)


# ---- the scenario ------------------------------------------------------------------


@dataclass
class Run:
    store: str
    gates: Path
    tasks: dict[str, types.TaskRecord] = field(default_factory=dict)
    scrapes: dict[str, Scrape] = field(default_factory=dict)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    followed: list[dict[str, Any]] = field(default_factory=list)
    follow_was_running: bool = False
    events_after: list[dict[str, Any]] = field(default_factory=list)
    exposed_names: set[str] = field(default_factory=set)


def _tether(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args], capture_output=True, text=True,
        timeout=60, env=env, check=False,
    )  # fmt: skip


def _follow(
    task_id: str, store: str, env: dict[str, str]
) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "tasks", "events", task_id, "--follow", "--json",
         "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("observe")
    gates = tmp / "gates"
    gates.mkdir()
    store = f"sqlite:///{tmp / 'obs.db'}"
    procs: list[WorkerProc] = []
    with StandInModelServer(model_name="stand-in-obs") as server:
        import observe_agents

        server.use(observe_agents.script)
        env = {
            **os.environ,
            "TETHER_OBS_MODEL_URL": server.base_url,
            "TETHER_OBS_GATES": str(gates),
            "OTEL_SDK_DISABLED": "true",
        }
        r = Run(store=store, gates=gates)
        runtime = Runtime(store=store)
        runtime.register(observe_agents.agent, spec=SPEC)

        def submit(key: str, text: str) -> types.TaskRecord:
            r.tasks[key] = runtime.submit("faulty", text, tenant=TENANT)
            return r.tasks[key]

        def settle(key: str) -> types.TaskRecord:
            def final() -> bool:
                return runtime.get_task(r.tasks[key].id).status in types.FINAL_STATUSES

            wait_until(final, what=f"task {key} to end")
            r.tasks[key] = runtime.get_task(r.tasks[key].id)
            return r.tasks[key]

        def entered(gate: str, n: int, timeout: float = 30.0) -> None:
            wait_until(
                lambda: (gates / f"{gate}.entered.{n}").exists(),
                what=f"{gate} entered {n}x",
                timeout=timeout,
            )

        try:
            w0 = start_worker("obs-w0", store, tmp, env)
            procs.append(w0)

            # t1: a 429, then the tool call (a no-op fault keeps the order); the tool
            # fails once retryably; the final answer comes back truncated, then whole
            server.inject(Fault.status(429), Fault.delay(0), Fault.length())
            submit("t1", "flaky a")
            settle("t1")
            # t2: a 400 the model endpoint refuses: the task fails
            server.inject(Fault.status(400))
            submit("t2", "reply now")
            settle("t2")

            # t3: hold at the gate; follow its events from another process meanwhile
            submit("t3", "hold g3")
            entered("g3", 1)
            follower, lines = _follow(r.tasks["t3"].id, store, env)
            first = lines.get(timeout=30)
            assert first is not None
            r.followed.append(json.loads(first))
            r.follow_was_running = follower.poll() is None
            r.scrapes["w0.t3_running"] = w0.scrape()
            (gates / "g3.open").touch()
            settle("t3")
            assert follower.wait(timeout=30) == 0
            while (line := lines.get(timeout=30)) is not None:
                r.followed.append(json.loads(line))
            r.scrapes["w0.t3_done"] = w0.scrape()
            r.exposed_names = set(re.findall(r"^# TYPE (\S+) ", w0.body(), re.M))
            shown = _tether(
                "tasks", "events", r.tasks["t3"].id, "--json", "--store", store, env=env
            )
            assert shown.returncode == 0, shown.stderr
            r.events_after = [json.loads(line) for line in shown.stdout.splitlines()]

            # t4: a stuck first attempt, retried; the retry waits at the gate
            submit("t4", "sticky s4")
            entered("s4", 1)
            r.scrapes["w0.t4_stuck"] = w0.scrape()
            (gates / "s4.open").touch()
            settle("t4")

            # t5: SIGKILL w0 mid-tool, restart it: it takes its own lease back at once
            submit("t5", "hold g5")
            entered("g5", 1)
            r.scrapes["w0.final"] = w0.scrape()
            r.logs["w0"] = w0.json_lines()
            w0.proc.kill()
            w0.proc.wait()
            w0b = start_worker("obs-w0", store, tmp, env, n=1)
            procs.append(w0b)
            entered("g5", 2)

            # freeze w0 until its lease expires and w1 takes t5 over; thaw: lease lost
            w0b.proc.send_signal(signal.SIGSTOP)
            w1 = start_worker("obs-w1", store, tmp, env)
            procs.append(w1)
            for _ in range(6):
                try:
                    entered("g5", 3, timeout=LEASE_TTL + 8)
                    break
                except AssertionError:
                    # frozen inside a write transaction (rare): the store stays locked,
                    # so let it finish that write and freeze it again
                    w0b.proc.send_signal(signal.SIGCONT)
                    time.sleep(0.1)
                    w0b.proc.send_signal(signal.SIGSTOP)
            else:
                raise AssertionError("w1 never took t5 over")
            w0b.proc.send_signal(signal.SIGCONT)
            wait_until(
                lambda: value(w0b.scrape(), "tether_leases_lost_total") == 1.0,
                what="w0 to notice its lost lease",
            )
            (gates / "g5.open").touch()
            settle("t5")
            r.scrapes["w0b.final"] = w0b.scrape()
            r.scrapes["w1.final"] = w1.scrape()
            for p in procs:
                p.stop()
            r.logs["w0b"] = w0b.json_lines()
            r.logs["w1"] = w1.json_lines()
            yield r
        finally:
            for p in procs:
                p.stop()
            runtime.close()


# ---- the tests ---------------------------------------------------------------------

FAULTY = (("task_type", "faulty"),)


def by(label: str, scrape: Scrape, name: str) -> dict[str, float]:
    """A metric's series keyed by one label's value (the others must be task_type=faulty
    or absent)."""
    out = {}
    for labels, v in series(scrape, name).items():
        d = dict(labels)
        key = d.pop(label)
        assert d in ({}, {"task_type": "faulty"}), (name, labels)
        out[key] = v
    return out


def test_every_design_metric_is_exposed(run: Run) -> None:
    assert run.exposed_names == set(metrics.METRIC_NAMES) | set(metrics.PROCESS_NAMES)


def test_counters_of_the_first_worker_are_exact(run: Run) -> None:
    s = run.scrapes["w0.final"]
    assert series(s, "tether_tasks_started_total") == {FAULTY: 5.0}
    assert by("outcome", s, "tether_tasks_finished_total") == {"completed": 3.0, "failed": 1.0}
    # t1..t4 each start steps 0-2 except t2 (fails at 0); t5 is at its tool step
    assert by("step", s, "tether_task_steps_started_total") == {"0": 5.0, "1": 4.0, "2": 3.0}
    assert by("step", s, "tether_task_steps_completed_total") == {"0": 4.0, "1": 3.0, "2": 3.0}
    assert by("error_type", s, "tether_task_retries_total") == {
        "RateLimited": 1.0,  # t1's 429
        "ToolFailed": 1.0,  # t1's flaky tool (ToolRetryable's operator class)
        "OutputTruncated": 1.0,  # t1's cut-off answer, asked again with more room
        "StepStuck": 1.0,  # t4's silent first attempt
    }
    errors_seen = {
        (dict(k)["type"], dict(k)["error_class"], dict(k)["final"]): v
        for k, v in series(s, "tether_errors_total").items()
    }
    assert errors_seen == {
        ("model", "RateLimited", "false"): 1.0,
        ("tool", "ToolFailed", "false"): 1.0,
        ("model", "OutputTruncated", "false"): 1.0,
        ("tool", "StepStuck", "false"): 1.0,
        # t2's 400: once, though it failed the task too
        ("model", "ModelRejected", "true"): 1.0,
    }
    assert series(s, "tether_output_truncations_total") == {FAULTY: 1.0}
    assert value(s, "tether_steps_replayed_total") == 0.0
    assert total(s, "tether_task_recoveries_total") == 0.0
    assert value(s, "tether_leases_lost_total") == 0.0
    assert value(s, "tether_sessions_stuck") == 0.0
    assert by("end_reason", s, "tether_session_duration_seconds_count") == {
        "completed": 3.0,
        "failed": 1.0,
    }
    assert series(s, "tether_context_compactions_total") == {}
    assert series(s, "tether_requests_total") == {}  # a worker serves no API
    assert (value(s, "tether_journal_commit_seconds_count") or 0) > 0
    assert (value(s, "tether_worker_memory_bytes") or 0) > 0


def test_session_gauges_follow_the_running_task(run: Run) -> None:
    def sessions(key: str, name: str = "tether_session_context_tokens") -> dict[str, float]:
        return {dict(k)["session_id"]: v for k, v in series(run.scrapes[key], name).items()}

    t3, t4, t5 = (run.tasks[k].session_id for k in ("t3", "t4", "t5"))
    running = sessions("w0.t3_running")
    assert list(running) == [t3] and running[t3] > 0
    assert sessions("w0.t3_running", "tether_session_context_limit_tokens") == {t3: 8192.0}
    assert sessions("w0.t3_done") == {}
    assert sessions("w0.t3_done", "tether_session_context_limit_tokens") == {}
    assert list(sessions("w0.t4_stuck")) == [t4]
    assert list(sessions("w0.final")) == [t5]
    # t4's first attempt went silent; its retry waits at the gate: still stuck
    assert value(run.scrapes["w0.t4_stuck"], "tether_sessions_stuck") == 1.0
    assert value(run.scrapes["w0.t3_running"], "tether_sessions_stuck") == 0.0


def test_restart_and_takeover_are_counted_where_they_happen(run: Run) -> None:
    t5 = run.tasks["t5"]
    assert (t5.status, t5.runs) == ("completed", 3)

    b = run.scrapes["w0b.final"]  # w0 restarted after SIGKILL, then frozen and thawed
    assert series(b, "tether_tasks_started_total") == {}
    assert by("reason", b, "tether_task_recoveries_total") == {"resume": 1.0}
    assert value(b, "tether_steps_replayed_total") == 1.0  # t5's model step
    assert value(b, "tether_leases_lost_total") == 1.0
    assert by("step", b, "tether_task_steps_started_total") == {"1": 1.0}
    assert series(b, "tether_task_steps_completed_total") == {}
    assert series(b, "tether_tasks_finished_total") == {}
    assert by("end_reason", b, "tether_session_duration_seconds_count") == {"abandoned": 1.0}
    assert series(b, "tether_session_context_tokens") == {}
    assert value(b, "tether_sessions_stuck") == 0.0

    w1 = run.scrapes["w1.final"]  # took t5 over once w0's lease expired
    assert series(w1, "tether_tasks_started_total") == {}
    assert by("reason", w1, "tether_task_recoveries_total") == {"recovery": 1.0}
    assert value(w1, "tether_steps_replayed_total") == 1.0
    assert value(w1, "tether_leases_lost_total") == 0.0
    assert by("outcome", w1, "tether_tasks_finished_total") == {"completed": 1.0}
    assert by("step", w1, "tether_task_steps_started_total") == {"1": 1.0, "2": 1.0}
    assert by("step", w1, "tether_task_steps_completed_total") == {"1": 1.0, "2": 1.0}
    assert by("end_reason", w1, "tether_session_duration_seconds_count") == {"completed": 1.0}
    assert series(w1, "tether_errors_total") == {}
    assert series(w1, "tether_session_context_tokens") == {}
    assert (value(w1, "tether_journal_commit_seconds_count") or 0) > 0


def test_every_log_line_about_a_task_carries_its_ids(run: Run) -> None:
    by_id = {t.id: t for t in run.tasks.values()}
    for worker, lines in run.logs.items():
        about_tasks = [line for line in lines if "task" in line]
        assert about_tasks, worker
        for line in about_tasks:
            task = by_id[line["task"]]
            assert line["tenant"] == TENANT, line
            assert line["session"] == task.session_id, line
            assert str(line["worker"]).startswith(f"obs-{worker[:2]}"), line
            if line["event"] in ("step.started", "step.completed", "step.retrying",
                                 "step.failed", "step.stuck"):  # fmt: skip
                assert isinstance(line["step"], int), line
                assert isinstance(line["attempt"], int), line
    w0 = run.logs["w0"]
    t1 = run.tasks["t1"].id
    # a line the tool itself logged, from its thread: the step's ids were bound for it
    tool_lines = [line for line in w0 if line["event"] == "tool.flaky"]
    assert [(line["task"], line["step"], line["attempt"]) for line in tool_lines] == [
        (t1, 1, 1),
        (t1, 1, 2),
    ]
    assert tool_lines[0]["logger"] == "observe_agents"
    ends = {(line["task"], line["event"]) for line in w0 if line["event"].startswith("task.")}
    for key, outcome in (("t1", "completed"), ("t2", "failed"), ("t3", "completed")):
        assert (run.tasks[key].id, "task.started") in ends
        assert (run.tasks[key].id, f"task.{outcome}") in ends
    retrying = [line for line in w0 if line["event"] == "step.retrying"]
    assert {line["error"]["error_class"] for line in retrying} == {
        "RateLimited", "ToolFailed", "OutputTruncated", "StepStuck",
    }  # fmt: skip
    lost = [line for line in run.logs["w0b"] if line["event"] == "lease.lost"]
    assert [line["task"] for line in lost] == [run.tasks["t5"].id]


def test_events_followed_from_another_process_while_the_task_ran(run: Run) -> None:
    assert run.follow_was_running
    followed, stored = run.followed, run.events_after
    assert [e["seq"] for e in followed] == [e["seq"] for e in stored]
    assert [e["event"] for e in followed] == [e["event"] for e in stored]
    seqs = [e["seq"] for e in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    names = [e["event"] for e in stored]
    assert names[-1] == "task.completed"
    assert "task.started" in names
    steps = [(e["step"], e["event"]) for e in stored if e["event"].startswith("step.")]
    assert steps == [
        (0, "step.started"),
        (0, "step.completed"),
        (1, "step.started"),
        (1, "step.completed"),
        (2, "step.started"),
        (2, "step.completed"),
    ]
    started = {e["step"]: e["data"] for e in stored if e["event"] == "step.started"}
    assert started[0]["model"] == "stand-in-obs"
    assert started[1]["name"] == "hold" and started[1]["tool_call_id"]


_METRIC = re.compile(r"\b(?:tether|process)_[a-z0-9_]+")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_PROMETHEUS_LABELS = {"job", "instance"}


def _family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name.removesuffix(suffix) in metrics.METRIC_NAMES:
            return name.removesuffix(suffix)
    return name


def test_alert_rules_read_series_the_workers_expose(run: Run, tmp_path: Path) -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    scraped: dict[str, set[str]] = {}  # metric -> its label names, over every scrape
    for s in run.scrapes.values():
        for name, label_set in s:
            scraped.setdefault(_family(name), set()).update(k for k, _ in label_set)
    for rule in rules:
        names = {_family(n) for n in _METRIC.findall(rule["expr"])}
        assert names or "up{" in rule["expr"], rule["alert"]  # or Prometheus's own ``up``
        assert names <= set(scraped), (rule["alert"], names - set(scraped))
        grouped = {x.strip() for g in _BY.findall(rule["expr"]) for x in g.split(",")} - {""}
        offered = set().union(*(scraped[n] for n in names)) | _PROMETHEUS_LABELS
        assert grouped <= offered, (rule["alert"], grouped - offered)

    # The rules evaluated by promtool over the real series of three workers, held
    # steady for an hour (a healthy, idle fleet): every expression runs on these label
    # sets, and none fires.
    picked = {"w0": "w0.t3_running", "w0b": "w0b.final", "w1": "w1.final"}
    input_series = []
    for instance, key in picked.items():
        for (name, labels), v in run.scrapes[key].items():
            sel = ",".join(f'{k}="{val}"' for k, val in (*labels, ("job", "tether"),
                                                         ("instance", instance)))  # fmt: skip
            input_series.append({"series": f"{name}{{{sel}}}", "values": f"{v:g}x60"})
    test_file = tmp_path / "scraped_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(ALERTS)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": input_series,
                        "alert_rule_test": [
                            {"eval_time": "59m", "alertname": rule["alert"], "exp_alerts": []}
                            for rule in rules
                        ],
                    }
                ],
            }
        )
    )
    exe = shutil.which("promtool")
    assert exe is not None, "promtool is not installed: apt-get install -y prometheus"
    done = subprocess.run(
        [exe, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
