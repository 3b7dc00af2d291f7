"""Stable worker ids: the host plus the first free slot, held by a file lock that the
kernel drops when the holder dies, so a restarted worker gets its old id back."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tether import errors
from tether.execution.identity import worker_identity

HOST = socket.gethostname()


def _url(tmp_path: Path, name: str = "store") -> str:
    return f"sqlite:///{tmp_path / name}.db"


def test_an_explicit_id_is_used_as_given(tmp_path: Path) -> None:
    with worker_identity("worker-7", _url(tmp_path)) as wid:
        assert wid == "worker-7"


def test_slots_are_taken_in_order_and_given_back(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with worker_identity(None, url) as first, worker_identity(None, url) as second:
        assert (first, second) == (f"{HOST}:worker-0", f"{HOST}:worker-1")
        with worker_identity(None, url) as third:
            assert third == f"{HOST}:worker-2"
    with worker_identity(None, url) as again:
        assert again == f"{HOST}:worker-0"


def test_each_store_counts_its_own_slots(tmp_path: Path) -> None:
    with (
        worker_identity(None, _url(tmp_path, "one")) as one,
        worker_identity(None, _url(tmp_path, "two")) as two,
    ):
        assert one == two == f"{HOST}:worker-0"


def test_a_killed_holder_gives_its_slot_back(tmp_path: Path) -> None:
    url = _url(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from tether.execution.identity import worker_identity\n"
            f"with worker_identity(None, {url!r}) as wid:\n"
            "    print(wid, flush=True)\n"
            "    time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == f"{HOST}:worker-0"
        with worker_identity(None, url) as wid:
            assert wid == f"{HOST}:worker-1"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with worker_identity(None, url) as wid:
            assert wid == f"{HOST}:worker-0"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_no_free_slot_is_an_error_naming_the_way_out(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(worker_identity(None, url, max_slots=2))
        with (
            pytest.raises(errors.InfraError, match="--worker-id"),
            worker_identity(None, url, max_slots=2),
        ):
            pass
