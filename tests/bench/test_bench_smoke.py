"""The tether part of the benchmark harness still runs (tiny sizes, SQLite, no timings
asserted): cost and bytes per step, throughput, and the table built from them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common, report, suite_tether  # noqa: E402

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


def test_tether_per_step_and_throughput_run_and_fill_the_table(tmp_path: Path) -> None:
    path = tmp_path / "bench.db"
    url = f"sqlite:///{path}"

    async def go() -> dict[str, object]:
        result: dict[str, object] = {"system": "tether", "backend": "sqlite"}
        result.update(
            await suite_tether.per_step(url, lambda: common.sqlite_payload_bytes(str(path)), TINY)
        )
        result["steps_per_s"] = await suite_tether.throughput(url, TINY)
        return result

    result = asyncio.run(go())
    overhead = result["overhead_ms"]
    stored = result["bytes_per_step"]
    assert isinstance(overhead, dict) and isinstance(stored, dict)
    assert set(overhead) == set(stored) == {"2", "6"}
    # every step appends a ~500-byte message: what is stored per step is at least that
    assert all(v is not None and v >= common.MESSAGE_BYTES for v in stored.values())
    assert all(v is not None and v >= 0 for v in overhead.values())
    throughput = result["steps_per_s"]
    assert isinstance(throughput, dict) and set(throughput) == {"1", "4"}
    assert all(v > 0 for v in throughput.values())

    text = report.markdown([result], {"size": "tiny"})
    assert "| overhead per step, history 10 (ms, median) |" in text
    assert "| steps/s, 50 concurrent sessions |" in text


def test_cpu_per_step_splits_the_run_by_thread(tmp_path: Path) -> None:
    from bench import cpu_per_step

    result = asyncio.run(cpu_per_step.measure(2, 3, tmp_path))
    assert result["steps"] == 2 * 3
    threads = result["threads_us_per_step"]
    assert isinstance(threads, dict) and {"MainThread", "tether-sqlite"} <= set(threads)
