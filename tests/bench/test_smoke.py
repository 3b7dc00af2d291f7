"""The tether part of the benchmark harness computes its figures from what really
happened (tiny sizes, SQLite): bytes per step from the database file and the step rows
in it, steps/s from the steps the store holds over the measured window, and the overhead
from real timings (a known delay injected between steps shows up in it). No wall-clock
limit is asserted."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common, report, suite_tether  # noqa: E402
from tether.observe import events  # noqa: E402

TINY = common.Sizes(
    lengths=(2, 6),
    window=3,
    concurrency=((1, 3), (4, 3)),
    rss_tasks=0,
    recovery_tasks=0,
    lease_ttl=2.0,
    proc_tasks=0,
    proc_steps=0,
)


def _rows(path: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


class _Delay:
    """Sleeps ``seconds`` (blocking the loop) after each step's commit: time between one
    step's work and the next that the overhead figure must count."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_event(self, event: events.TaskEvent) -> None:
        if event.name == events.STEP_COMPLETED:
            time.sleep(self.seconds)


def test_bytes_per_step_are_the_database_files_growth_over_its_step_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bench.db"
    seen: list[tuple[int, int, int]] = []  # (step rows, message rows, payload bytes)

    def measure() -> int:
        stored = common.sqlite_payload_bytes(str(path))
        seen.append((_rows(path, "steps"), _rows(path, "messages"), stored))
        return stored

    result = asyncio.run(suite_tether.per_step(f"sqlite:///{path}", measure, TINY))
    stored = result["bytes_per_step"]
    assert set(stored) == {"2", "6"}
    # snapshots in the order the history grows: 2, 2+3, 6, 6+3
    assert len(seen) == 4
    for length, (a, b) in zip(("2", "6"), ((seen[0], seen[1]), (seen[2], seen[3])), strict=True):
        steps, messages = b[0] - a[0], b[1] - a[1]
        assert steps == TINY.window, "the window is the number of steps really committed"
        assert messages == TINY.window, "each step of the workload appends one message"
        assert stored[length] == (b[2] - a[2]) / steps
        # each step stores its ~500-byte message and its journal row: more than the
        # message, and less than the message copied into both (payload version 2)
        assert common.MESSAGE_BYTES <= stored[length] < 2 * common.MESSAGE_BYTES + 1000


def test_steps_per_second_are_the_stores_steps_over_the_measured_window(tmp_path: Path) -> None:
    path = tmp_path / "bench.db"
    measured: dict[str, tuple[int, float]] = {}
    throughput = asyncio.run(suite_tether.throughput(f"sqlite:///{path}", TINY, measured))
    assert set(throughput) == set(measured) == {"1", "4"}
    for sessions, (steps, seconds) in measured.items():
        assert throughput[sessions] == steps / seconds
    # the steps counted from events are the journal's rows, every round together
    assert sum(steps for steps, _ in measured.values()) == _rows(path, "steps")
    # one task per session, each of the same known length
    assert measured["4"][0] == 4 * measured["1"][0]
    assert _rows(path, "tasks") == 1 + 4


def test_overhead_counts_a_delay_injected_between_steps(tmp_path: Path) -> None:
    delay = 0.03

    def run(name: str, observer: events.Observer | None) -> dict[str, float | None]:
        path = tmp_path / name
        figures = asyncio.run(
            suite_tether.per_step(
                f"sqlite:///{path}", lambda: common.sqlite_payload_bytes(str(path)), TINY, observer
            )
        )
        return figures["overhead_ms"]  # type: ignore[no-any-return]

    plain = run("plain.db", None)
    delayed = run("delayed.db", _Delay(delay))
    assert set(plain) == set(delayed) == {"2", "6"}
    for length in ("2", "6"):
        base, slowed = plain[length], delayed[length]
        assert base is not None and slowed is not None
        assert base >= 0
        # every gap between two steps holds one injected delay (sleep waits at least it)
        assert slowed >= delay * 1000


def test_the_table_shows_the_figures_measured() -> None:
    result: dict[str, object] = {
        "system": "tether",
        "backend": "sqlite",
        "overhead_ms": {"10": 1.25, "100": 1.5},
        "bytes_per_step": {"10": 1234.0, "100": 1240.0},
        "steps_per_s": {"1": 321.0, "50": 654.0},
    }
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1]
        for line in report.markdown([result], {"size": "tiny"}).splitlines()
        if line.startswith("| ") and " | " in line
    }
    assert rows["steps/s, 1 session"] == "321"
    assert rows["steps/s, 50 concurrent sessions"] == "654"
    assert rows["overhead per step, history 10 (ms, median)"].startswith("1.2")
    assert rows["stored bytes per step, history 100"].replace(",", "") == "1240"


def test_cpu_per_step_splits_the_run_by_thread(tmp_path: Path) -> None:
    from bench import cpu_per_step

    result = asyncio.run(cpu_per_step.measure(2, 3, tmp_path))
    assert result["sessions"] == 2 and result["steps"] == 2 * 3
    threads = result["threads_us_per_step"]
    assert isinstance(threads, dict) and {"MainThread", "tether-sqlite"} <= set(threads)
    # per-thread figures come from /proc in clock ticks (10 ms): a tiny run may read 0
    assert isinstance(result["cpu_us_per_step"], int) and result["cpu_us_per_step"] > 0
    assert all(t["user_us"] >= 0 and t["sys_us"] >= 0 for t in threads.values())
