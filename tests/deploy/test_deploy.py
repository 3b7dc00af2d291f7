"""The shipped Prometheus rules, scrape config and Grafana dashboard.

promtool comes from Debian's ``prometheus`` package; these tests fail (never skip)
without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether.observe import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL = "apt-get update && apt-get install -y prometheus"

_METRIC = re.compile(r"\b(?:tether_[a-z0-9_]+|process_[a-z0-9_]+|up)\b")
_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool; fails the test (never skips) when it is not installed."""
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(f"promtool is not installed; install it with: {INSTALL}")
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


KNOWN = {*metrics.METRIC_NAMES, *metrics.PROCESS_NAMES, "up"}
"""tether's metrics, the standard process collector's, and Prometheus's own ``up``."""


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads, histogram suffixes folded away."""
    names = set()
    for name in _METRIC.findall(expr):
        if name not in metrics.METRIC_NAMES:
            for suffix in _SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in metrics.METRIC_NAMES:
                    name = name.removesuffix(suffix)
        names.add(name)
    return names


ALERTS = DEPLOY / "prometheus" / "alerts.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_TEST = Path(__file__).with_name("alerts_test.yml")

EXPECTED_ALERTS = {
    "TetherSessionContextHigh",
    "TetherSessionsStuck",
    "TetherErrorRateSpike",
    "TetherFunnelDrop",
    "TetherRecoveriesSpike",
    "TetherWorkerMemoryGrowth",
    "TetherWorkerMemoryNearLimit",
    "TetherWorkerGuardDrained",
    "TetherSyncThreadsAbandoned",
    "TetherTargetDown",
    "TetherWorkerRestarts",
}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    out = promtool("check", "rules", ALERTS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in out.stdout


def test_every_alert_fires_in_promtool_unit_tests() -> None:
    out = promtool("test", "rules", RULES_TEST)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    tested = {
        t["alertname"]
        for g in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for t in g["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert tested == EXPECTED_ALERTS


def test_the_example_scrape_config_is_valid() -> None:
    out = promtool("check", "config", CONFIG)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_use_only_declared_metrics() -> None:
    assert {r["alert"] for r in rules()} == EXPECTED_ALERTS
    for rule in rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= KNOWN, (rule["alert"], used)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


DASHBOARD = DEPLOY / "grafana" / "tether-dashboard.json"

# Grafana's variables, replaced by what Grafana would send to Prometheus.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "6h", "$task_type": ".*"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_dashboard_is_a_grafana_dashboard() -> None:
    d = dashboard()
    assert d["title"] and d["uid"] == "tether-overview" and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0
    for p in panels():
        assert p["title"] and p["targets"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert [t["refId"] for t in p["targets"]] == [chr(65 + i) for i in range(len(p["targets"]))]
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["datasource", "task_type"]


def test_dashboard_covers_the_agent_health_views() -> None:
    titles = " | ".join(p["title"].lower() for p in panels())
    for needle in (
        "by step",
        "completion rate by task type",
        "context utilisation",
        "top sessions",
        "errors by type",
        "errors by class",
        "retries",
        "recoveries",
        "session duration by end reason",
        "stuck sessions",
        "worker memory",
        "oldest running step",
        "threads abandoned",
        "draining by reason",
        "restarts",
        "final",
    ):
        assert needle in titles, needle


def test_dashboard_queries_use_only_declared_metrics_and_all_of_them() -> None:
    used: set[str] = set()
    for expr in exprs():
        names = metric_names(expr)
        assert names, expr
        assert names <= KNOWN, (expr, names - KNOWN)
        used |= names
    variable = dashboard()["templating"]["list"][1]["query"]["query"]
    assert metric_names(variable) <= set(metrics.METRIC_NAMES)
    assert used >= set(metrics.METRIC_NAMES) | {"process_start_time_seconds", "up"}


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(exprs()):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool("check", "rules", path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout
