"""The shipped queries, evaluated by a real Prometheus scraping a real `tether worker`.

Debian's ``prometheus`` runs on a free port with a temporary config that scrapes the
worker's ``--metrics-port`` every second and loads ``deploy/prometheus/alerts.yml``;
the test asks its HTTP API. Phase 1 runs each workflow of ``query_agents`` once on a
fresh worker: its first task, failure and error are increases ``increase()`` sees,
and a step that never heartbeats shows as stuck, with its age. Phase 2 runs them
again; over a window that starts after every series exists, the seed's queries
(written with tether's names) give exact numbers, including 0 for the step that
always fails. Every dashboard query and alert rule evaluates without error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import query_agents
import yaml

from tether import Runtime, types
from waiting import wait_until

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AGENTS = HERE / "query_agents.py"
NAMES = ("steady", "doomed", "flaky", "silent")
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tether-dashboard.json"
INSTALL = "apt-get update && apt-get install -y prometheus"

Result = dict[tuple[tuple[str, str], ...], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str, at: float | None = None, keep: tuple[str, ...] = ()) -> Result:
        """An instant query: each series' labels (only ``keep``, if given) → value."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        response = self.http.get("/api/v1/query", params=params)
        if response.status_code == 503:  # still starting (its answer is text, not JSON)
            response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", (expr, body)
        out: Result = {}
        for item in body["data"]["result"]:
            labels = {k: v for k, v in item["metric"].items() if not keep or k in keep}
            out[tuple(sorted(labels.items()))] = float(item["value"][1])
        return out

    def by(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        return {dict(k)[label]: v for k, v in self.query(expr, at, keep=(label,)).items()}

    def one(self, expr: str, at: float | None = None) -> float | None:
        values = list(self.query(expr, at).values())
        assert len(values) <= 1, (expr, values)
        return values[0] if values else None

    def scraped_after(self, t: float, scrapes: int = 1) -> None:
        """Wait until the worker was scraped ``scrapes`` times after ``t`` (its clock)."""
        wait_until(
            lambda: (
                (last := self.one('timestamp(up{job="tether-worker"})')) is not None
                and last >= t + scrapes - 0.5
            ),
            what=f"{scrapes} scrape(s) after {t:.1f}",
            timeout=60,
            poll=0.2,
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Runtime, Prometheus, Path, subprocess.Popen[bytes]]]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail(f"prometheus is not installed; install it with: {INSTALL}")
    store = f"sqlite:///{tmp_path / 'q.db'}"
    runtime = Runtime(store=store)
    for name in NAMES:
        runtime.register(getattr(query_agents, name), spec=f"{AGENTS}:{name}")
    gate = tmp_path / "gate"
    env = {**os.environ, "TETHER_TEST_GATE": str(gate), "OTEL_SDK_DISABLED": "true"}
    env.pop("TETHER_STORE", None)
    wlog = tmp_path / "worker.log"
    with wlog.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tether", "worker", *(f"{AGENTS}:{n}" for n in NAMES),
             "--store", store, "--worker-id", "q1", "--metrics-port", "0", "--concurrency", "4",
             "--poll", "0.05", "--stuck-after", "1"],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,
        )  # fmt: skip
    prom: subprocess.Popen[bytes] | None = None
    p: Prometheus | None = None
    try:
        found = wait_until(
            lambda: (
                worker.poll() is None
                and next(
                    (line for line in wlog.read_text().splitlines() if "metrics on http" in line),
                    None,
                )
            ),
            what="the worker's metrics port",
        )
        port = int(found.rsplit(":", 1)[1].split("/")[0])
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "tether-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        web = f"127.0.0.1:{free_port()}"
        with (tmp_path / "prometheus.log").open("wb") as sink:
            prom = subprocess.Popen(
                [exe, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address={web}"],
                stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
            )  # fmt: skip
        p = Prometheus(f"http://{web}")

        def up() -> bool:
            assert prom is not None and prom.poll() is None, (
                tmp_path / "prometheus.log"
            ).read_text()
            try:
                return p.one('count_over_time(up{job="tether-worker"}[1m])') is not None
            except httpx.HTTPError:
                return False

        wait_until(up, what="Prometheus to scrape the worker", timeout=60, poll=0.2)
        yield runtime, p, gate, worker
    finally:
        if p is not None:
            p.http.close()
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, wlog.read_text()
        runtime.close()


def settle(runtime: Runtime, *tasks: types.TaskRecord) -> None:
    for t in tasks:
        wait_until(
            lambda t=t: runtime.get_task(t.id).status in types.FINAL_STATUSES,
            what=f"task {t.agent} to end",
        )


def test_the_seed_queries_in_a_real_prometheus(
    stack: tuple[Runtime, Prometheus, Path, subprocess.Popen[bytes]],
) -> None:
    runtime, p, gate, worker = stack
    t0 = time.time()
    p.scraped_after(t0)  # a sample of every initial series before the first task

    # ---- phase 1: first events on a fresh worker --------------------------------------
    first = {name: runtime.submit(name, "go") for name in NAMES}
    settle(runtime, first["steady"], first["doomed"], first["flaky"])
    # the step that never heartbeats counts as stuck once past --stuck-after, with its age
    wait_until(
        lambda: (
            p.one("tether_sessions_stuck") == 1
            and (p.one("tether_oldest_running_step_seconds") or 0) > 1
        ),
        what="the silent step to show as stuck",
        timeout=60,
        poll=0.2,
    )
    gate.touch()
    settle(runtime, first["silent"])
    t1 = time.time()
    p.scraped_after(t1)
    assert p.one("tether_sessions_stuck") == 0
    assert p.one("tether_oldest_running_step_seconds") == 0
    window = f"[{math.ceil(time.time() - t0) + 2}s]"
    # each first of its kind is an increase, not a series that appears at 1
    assert p.by(f"increase(tether_tasks_started_total{window})", "task_type").keys() == set(NAMES)
    assert all(
        v > 0 for v in p.by(f"increase(tether_tasks_started_total{window})", "task_type").values()
    )
    failed = p.by(f'increase(tether_tasks_finished_total{{outcome="failed"}}{window})', "task_type")
    assert failed["doomed"] > 0 and failed["steady"] == 0
    errors = p.query(
        f'increase(tether_errors_total{{type="tool"}}{window}) > 0', keep=("error_class", "final")
    )
    assert set(errors) == {
        (("error_class", "ToolFailed"), ("final", "false")),  # flaky, retried
        (("error_class", "ToolFailed"), ("final", "true")),  # doomed, for good
    }
    started = p.one("process_start_time_seconds")
    assert started is not None and t0 - 120 < started < t0

    # ---- phase 2: a window in which every series exists from its first sample on ----
    p.scraped_after(t1)
    before = p.one('timestamp(up{job="tether-worker"})')  # the last sample before phase 2
    assert before is not None
    second = [runtime.submit(name, "go") for name in ("steady", "doomed", "flaky")]
    settle(runtime, *second)
    p.scraped_after(time.time(), scrapes=2)
    at = time.time()
    w = f"{int((at - before) * 1000) + 100}ms"  # from just before that sample to now

    # The seed's "task completion rate by step", with tether's names: 0, not absent,
    # for the step that always fails.
    funnel = p.by(
        f'sum(rate(tether_task_steps_completed_total{{step="0"}}[{w}])) by (task_type) / '
        f'sum(rate(tether_task_steps_started_total{{step="0"}}[{w}])) by (task_type)',
        "task_type",
        at,
    )
    assert {k: funnel[k] for k in ("steady", "doomed", "flaky")} == {
        "steady": 1.0,
        "doomed": 0.0,
        "flaky": 1.0,
    }
    assert math.isnan(funnel["silent"])  # it started no step in the window: no ratio
    # The seed's "error rate by type": tool errors per started step, by class; one
    # final failure (doomed) and one retried error (flaky) against 4 steps started.
    rate = p.query(
        f'sum(rate(tether_errors_total{{type="tool"}}[{w}])) by (error_class, final) '
        f"/ ignoring(error_class, final) group_left "
        f"sum(rate(tether_task_steps_started_total[{w}]))",
        at,
        keep=("error_class", "final"),
    )
    assert {k: v for k, v in rate.items() if v} == {
        (("error_class", "ToolFailed"), ("final", "false")): pytest.approx(0.25),
        (("error_class", "ToolFailed"), ("final", "true")): pytest.approx(0.25),
    }
    completion = p.by(
        f'sum by (task_type) (rate(tether_tasks_finished_total{{outcome="completed"}}[{w}])) '
        f"/ sum by (task_type) (rate(tether_tasks_finished_total[{w}]))",
        "task_type",
        at,
    )
    assert {k: completion[k] for k in ("steady", "doomed", "flaky")} == {
        "steady": 1.0,
        "doomed": 0.0,
        "flaky": 1.0,
    }

    # every dashboard query and alert rule evaluates in this Prometheus
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for expr in exprs:
        for var, value in {"$__rate_interval": w, "$__range": w, "$task_type": ".*"}.items():
            expr = expr.replace(var, value)
        p.query(expr, at)
    rules = p.http.get("/api/v1/rules").json()["data"]["groups"]
    evaluated = {r["name"]: r for g in rules for r in g["rules"]}
    alert_names = {
        r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    }
    assert set(evaluated) == alert_names
    assert {name: r["health"] for name, r in evaluated.items()} == dict.fromkeys(alert_names, "ok")
    assert worker.poll() is None
