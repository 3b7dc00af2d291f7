"""Every log record in the runtime's code has a stable event name, ids as fields.

A record named ``task.claimed`` with ``extra={"task": ...}`` can be searched and
counted; ``"task %s: lease lost" % id`` cannot. This reads the source (AST), so a new
%-formatted or f-string record fails here before it reaches a log pipeline."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tether

SRC = Path(tether.__file__).parent
CHECKED = sorted(
    p.name
    for p in SRC.iterdir()
    if (p.is_dir() and not p.name.startswith("_")) or (p.suffix == ".py")
)
"""Every module and folder of the package (observers, stores, integrations included)."""
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def _files() -> list[Path]:
    found: list[Path] = []
    for name in CHECKED:
        path = SRC / name
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def _log_calls(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"_log", "log", "logger"}
        ):
            calls.append(node)
    return calls


def test_the_scan_finds_the_runtime_s_log_records() -> None:
    assert sum(len(_log_calls(p)) for p in _files()) >= 20


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_every_log_record_is_a_stable_event_name_with_fields(path: Path) -> None:
    bad = []
    for call in _log_calls(path):
        first = call.args[0] if call.args else None
        name = first.value if isinstance(first, ast.Constant) else None
        if not isinstance(name, str) or len(call.args) > 1 or not EVENT.match(name):
            bad.append(f"{path.name}:{call.lineno}: {ast.unparse(call)[:100]}")
    assert not bad, "log records without a stable event name:\n" + "\n".join(bad)
