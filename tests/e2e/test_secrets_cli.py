"""The store password never reaches a terminal or a journal: `tether worker`, `serve`,
`keys create`, `doctor`, `migrate` and the error of a failed connection all print the
store URL redacted, whichever way the URL carries the password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

AGENTS = Path(__file__).with_name("cli_agents.py")
SECRET = "Sup3rSecretPw"


def with_password(url: str) -> str:
    """The URL carrying the password both ways: in its userinfo and as ``?password=``."""
    parts = urllib.parse.urlsplit(url)
    netloc = f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}"
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc, query=f"password={SECRET}&pool_max=3")
    )


def tether(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args], capture_output=True, text=True, timeout=120
    )


def run_until(args: list[str], marker: str, log: Path) -> str:
    """Start a long-running command, wait for ``marker`` in its output, SIGTERM it."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", *args], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while marker not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert marker in log.read_text(), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return log.read_text()


def test_no_command_prints_the_store_password(pg_url: str, tmp_path: Path) -> None:
    store = with_password(pg_url)
    seen: list[str] = []
    for args in (
        ["keys", "create", "--tenant", "acme", "--store", store],
        ["migrate", "--dry-run", "--store", store],
        ["doctor", "--store", store],
    ):
        done = tether(*args)
        assert done.returncode == 0, (args, done.stderr)
        seen += [done.stdout, done.stderr]
    missing_db = store.replace(urllib.parse.urlsplit(store).path, "/no_such_db_x")
    failed = tether("tasks", "list", "--store", missing_db)
    assert failed.returncode != 0
    seen += [failed.stdout, failed.stderr]
    seen.append(
        run_until(["worker", f"{AGENTS}:echo", "--store", store], "ready", tmp_path / "w.log")
    )
    seen.append(
        run_until(
            ["serve", f"{AGENTS}:echo", "--port", "0", "--store", store],
            "listening on",
            tmp_path / "s.log",
        )
    )
    everything = "\n".join(seen)
    assert "***" in everything  # the URL is shown, redacted
    assert SECRET not in everything
