"""Idempotent submission: concurrent retries of one request, even through two servers
on one store (as behind a load balancer), make exactly one task."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import server_support as support

from tether.store.base import Store


def test_concurrent_retries_with_one_key_make_one_task(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    with (
        support.serve_in_thread(store_url, workers=0) as one,
        support.serve_in_thread(store_url, workers=0) as two,
    ):
        sid = one.client(key).post("/v1/sessions", json={"agent": "echo"}).json()["id"]
        urls = [one.url, two.url] * 8
        barrier = threading.Barrier(len(urls))
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def retry(url: str) -> None:
            with httpx.Client(base_url=url, timeout=20.0) as c:
                barrier.wait()
                response = c.post(
                    f"/v1/sessions/{sid}/tasks",
                    json={"input": "charge the card once"},
                    headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "order-42"},
                )
            with lock:
                answers.append(response)

        threads = [threading.Thread(target=retry, args=(u,)) for u in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

        assert [r.status_code for r in answers] == [202] * len(urls), [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1

        async def tasks(s: Store) -> list[str]:
            return [t.id for t in await s.list_tasks(tenant="acme", session_id=sid)]

        stored = support.call_with_store(store_url, tasks)
        assert stored == [answers[0].json()["id"]]

        # a later retry still answers the same task; a new key makes a new one
        again = one.client(key).post(
            f"/v1/sessions/{sid}/tasks",
            json={"input": "charge the card once"},
            headers={"Idempotency-Key": "order-42"},
        )
        assert again.status_code == 202 and again.json()["id"] == stored[0]
        other = one.client(key).post(
            f"/v1/sessions/{sid}/tasks",
            json={"input": "charge the card once"},
            headers={"Idempotency-Key": "order-43"},
        )
        assert other.status_code == 202 and other.json()["id"] != stored[0]

        # the key reused for a different request is a conflict, not a silent answer
        reused = one.client(key).post(
            f"/v1/sessions/{sid}/tasks",
            json={"input": "something else"},
            headers={"Idempotency-Key": "order-42"},
        )
        assert reused.status_code == 409
        assert reused.json()["error"]["error_class"] == "Conflict"
        assert len(support.call_with_store(store_url, tasks)) == 2

        # keys are per tenant: another tenant's same key is its own request
        globex = support.make_key(store_url, "globex")
        gsid = one.client(globex).post("/v1/sessions", json={"agent": "echo"}).json()["id"]
        theirs = one.client(globex).post(
            f"/v1/sessions/{gsid}/tasks",
            json={"input": "charge the card once"},
            headers={"Idempotency-Key": "order-42"},
        )
        assert theirs.status_code == 202 and theirs.json()["id"] != stored[0]
