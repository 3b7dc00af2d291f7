"""A `tether serve` whose embedded worker has every sync tool thread abandoned says so:
``/readyz`` answers 503 ``saturated`` and the metrics count the abandoned threads,
until the thread comes back."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from server_support import fast_settings, serve_in_thread

from tether.execution.threads import SyncThreads
from waiting import wait_until


def _gauges(body: str) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name in ("tether_sync_tool_threads_abandoned", "tether_worker_saturated")
    }


def test_readyz_and_metrics_tell_a_saturated_worker(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    release, entered = threading.Event(), threading.Event()

    def stuck_tool() -> None:
        entered.set()
        release.wait(60)

    async def abandon(pool: SyncThreads) -> None:
        job = asyncio.ensure_future(pool.run(stuck_tool))
        await asyncio.to_thread(entered.wait, 30)
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)

    settings = replace(fast_settings(), sync_tool_threads=1)
    try:
        with serve_in_thread(store, execution=settings) as srv:
            http = srv.client()
            assert http.get("/readyz").json()["status"] == "ready"
            # a sync tool given up on its only thread (as a timed-out tool would be)
            asyncio.run(abandon(srv.service.workers[0].threads))
            answer = http.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["status"] == "saturated"
            assert "restart" in answer.json()["detail"]
            assert _gauges(http.get("/metrics").text) == {
                "tether_sync_tool_threads_abandoned": 1.0,
                "tether_worker_saturated": 1.0,
            }
            release.set()  # the call returns at last: its thread serves again
            wait_until(lambda: http.get("/readyz").status_code == 200, what="readiness")
            assert _gauges(http.get("/metrics").text) == {
                "tether_sync_tool_threads_abandoned": 0.0,
                "tether_worker_saturated": 0.0,
            }
    finally:
        release.set()
