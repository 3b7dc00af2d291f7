"""The side-by-side table (terminal and Markdown) and the curves (PNG).

Ratios read the same way in every row: how many times better tether is than the
peer, so above 1 tether is ahead and below 1 behind (for costs and bytes that is
peer ÷ tether, for throughput tether ÷ peer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PEERS = ("langgraph", "dbos")
NAMES = {"tether": "tether", "langgraph": "LangGraph", "dbos": "DBOS"}
SAVERS = {
    ("langgraph", "sqlite"): "LangGraph SqliteSaver",
    ("langgraph", "postgres"): "LangGraph PostgresSaver",
    ("dbos", "sqlite"): "DBOS (SQLite)",
    ("dbos", "postgres"): "DBOS (PostgreSQL)",
    ("tether", "sqlite"): "tether (SQLite)",
    ("tether", "postgres"): "tether (PostgreSQL)",
}

# (label, path into a result, lower is better, format)
ROWS: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    ("overhead per step, history 10 (ms, median)", ("overhead_ms", "10"), True, "{:.2f}"),
    ("overhead per step, history 100 (ms, median)", ("overhead_ms", "100"), True, "{:.2f}"),
    ("overhead per step, history 1000 (ms, median)", ("overhead_ms", "1000"), True, "{:.2f}"),
    ("stored bytes per step, history 10", ("bytes_per_step", "10"), True, "{:,.0f}"),
    ("stored bytes per step, history 100", ("bytes_per_step", "100"), True, "{:,.0f}"),
    ("stored bytes per step, history 1000", ("bytes_per_step", "1000"), True, "{:,.0f}"),
    ("steps/s, 1 session", ("steps_per_s", "1"), False, "{:,.0f}"),
    ("steps/s, 50 concurrent sessions", ("steps_per_s", "50"), False, "{:,.0f}"),
    ("steps/s, 500 concurrent sessions", ("steps_per_s", "500"), False, "{:,.0f}"),
    ("RSS growth over the run's tasks (%)", ("rss", "rss_growth_pct"), True, "{:+.1f}"),
    ("RSS at the end (MiB)", ("rss", "rss_end_mib"), True, "{:.0f}"),
)
TETHER_ONLY: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("lease TTL used (s)", ("recovery", "lease_ttl"), "{:.1f}"),
    (
        "SIGKILL, 100 in flight: all running again (s)",
        ("recovery", "sigkill_all_running_s"),
        "{:.2f}",
    ),
    ("SIGKILL, 100 in flight: all complete (s)", ("recovery", "sigkill_all_complete_s"), "{:.2f}"),
    (
        "SIGTERM, 100 in flight: all handed over (s)",
        ("recovery", "sigterm_all_running_s"),
        "{:.2f}",
    ),
    (
        "SIGTERM: lease released → running on B, median (s)",
        ("recovery", "sigterm_release_to_running_median_s"),
        "{:.3f}",
    ),
    (
        "SIGTERM: lease released → running on B, max (s)",
        ("recovery", "sigterm_release_to_running_max_s"),
        "{:.3f}",
    ),
    ("SIGTERM, 100 in flight: all complete (s)", ("recovery", "sigterm_all_complete_s"), "{:.2f}"),
    ("steps/s, 1 worker process", ("processes_steps_per_s", "1"), "{:,.0f}"),
    ("steps/s, 2 worker processes", ("processes_steps_per_s", "2"), "{:,.0f}"),
    ("steps/s, 4 worker processes", ("processes_steps_per_s", "4"), "{:,.0f}"),
)


def _get(result: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def _find(results: list[dict[str, Any]], system: str, backend: str) -> dict[str, Any] | None:
    for r in results:
        if r.get("system") == system and r.get("backend") == backend:
            return r
    return None


def _ratio(tether: float | None, peer: float | None, lower_better: bool) -> str:
    if tether is None or peer is None or tether == 0 or peer == 0:
        return "–"
    if lower_better and (tether < 0 or peer < 0):
        return "–"  # a shrinking RSS has no meaningful ratio
    ratio = peer / tether if lower_better else tether / peer
    return f"{ratio:.2f}×"


def tables(results: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each store, then tether's own rows."""
    out = []
    for backend, title in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        if not any(r.get("backend") == backend for r in results):
            continue
        t = _find(results, "tether", backend)
        peers = [(p, _find(results, p, backend)) for p in PEERS]
        header = [
            "figure",
            "tether",
            *(NAMES[p] for p, _ in peers),
            *(f"vs {NAMES[p]}" for p, _ in peers),
        ]
        rows = []
        for label, path, lower, fmt in ROWS:
            tv = _get(t, path)
            cells = [label, fmt.format(tv) if tv is not None else "–"]
            pvs = [_get(r, path) for _, r in peers]
            cells += [fmt.format(v) if v is not None else "–" for v in pvs]
            cells += [_ratio(tv, pv, lower) for pv in pvs]
            rows.append(cells)
        out.append((f"{title}", header, rows))
    rows = []
    for label, path, fmt in TETHER_ONLY:
        cells = [label]
        for backend in ("sqlite", "postgres"):
            v = _get(_find(results, "tether", backend), path)
            cells.append(fmt.format(v) if v is not None else "–")
        rows.append(cells)
    out.append(("tether: recovery and worker processes", ["figure", "SQLite", "PostgreSQL"], rows))
    return out


def print_table(console: Any, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from rich.table import Table

    for title, header, rows in tables(results):
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for r in results:
        for where in (r, r.get("steps_per_s") or {}):
            if isinstance(where, dict) and "error" in where:
                console.print(f"[red]{r['system']} on {r['backend']}: {where['error']}[/red]")
    console.print(
        "ratios: how many times better tether is (above 1: tether ahead, below 1: behind)"
    )


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = []
    for title, header, rows in tables(results):
        lines += [f"### {title}", "", "| " + " | ".join(header) + " |",
                  "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"tether": "tab:blue", "langgraph": "tab:orange", "dbos": "tab:green"}
    written = []
    for key, ylabel, name, log in (
        ("overhead_ms", "runtime overhead per step (ms, median)", "cost_per_step.png", False),
        ("bytes_per_step", "stored bytes per step", "bytes_per_step.png", True),
    ):
        fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
        for r in results:
            data = r.get(key)
            if not isinstance(data, dict):
                continue
            pts = sorted((int(k), v) for k, v in data.items() if v is not None)
            if not pts:
                continue
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker="o",
                color=styles.get(r["system"], "gray"),
                linestyle="-" if r["backend"] == "sqlite" else "--",
                label=SAVERS.get((r["system"], r["backend"]), r["system"]),
            )  # fmt: skip
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("session history length (messages)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel.split(' (')[0]}, one ~500-byte message a step", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
