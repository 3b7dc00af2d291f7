"""What the ``agents_*.py`` specs of ``test_agent_versions.py`` share: a counting script
and a ``record`` tool that logs each execution (with the code version that ran it) to
``TETHER_VERSIONS_EFFECTS``, and can stall at ``TETHER_VERSIONS_STALL`` for a SIGKILL."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from tether.models import scripted
from tether.models.scripted import ScriptedModel
from tether.tools import Tool, ToolContext, tool
from tether.types import ModelRequest

EFFECTS = "TETHER_VERSIONS_EFFECTS"
STALL = "TETHER_VERSIONS_STALL"
STALL_MARK = "TETHER_VERSIONS_STALL_MARK"

_COUNT = re.compile(r"^count to (\d+)$")
_RECORDED = re.compile(r"^recorded (\d+) of (\d+)")


def make_record(version: str) -> Tool:
    """The ``record`` tool as release ``version`` implements it (same name and schema)."""

    @tool
    def record(n: int, of: int, ctx: ToolContext) -> str:
        """Record the number n of a count to "of"."""
        if os.environ.get(STALL) == str(n):
            Path(os.environ[STALL_MARK]).write_text(ctx.idempotency_key)
            while True:
                time.sleep(1)
        line = json.dumps({"key": ctx.idempotency_key, "n": n, "version": version})
        with open(os.environ[EFFECTS], "a", encoding="utf-8") as effects:
            effects.write(line + "\n")
        return f"recorded {n} of {of}"

    return record


def make_script(version: str) -> scripted.Script:
    """Count with ``record``; the final answer names the version that wrote it."""

    def script(request: ModelRequest) -> scripted.Reply:
        last = request.messages[-1]
        if last.role == "user":
            asked = _COUNT.match(last.content or "")
            target = int(asked[1]) if asked else 0
            return ScriptedModel.call("record", n=0, of=target)
        progress = _RECORDED.match(last.content or "")
        assert progress is not None, last
        n, target = int(progress[1]), int(progress[2])
        if n + 1 < target:
            return ScriptedModel.call("record", n=n + 1, of=target)
        return f"counted to {target} ({version})"

    return script
