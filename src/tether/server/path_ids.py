"""The one rule for ids in a URL path, on every route and both engines.

An id is 1–255 characters with no control character (NUL above all: PostgreSQL cannot
hold it in text and answered 500 where SQLite answered 404). A path id that breaks the
rule can name no object, so it is refused at the edge with 422 before any store call.
Routes declare their ids with these annotations (new routes too)::

    SignalName = Annotated[str, path_ids.id_path("signal name")]

    @router.post("/{task_id}/signals/{name}")
    async def send_signal(task_id: path_ids.TaskIdPath, name: SignalName, ...): ...
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path

MAX_ID_CHARS = 255
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""No control characters (C0 and DEL); stated in the OpenAPI, so clients and fuzzers know."""


_ID = re.compile(ID_PATTERN)


def accepts(value: str) -> bool:
    """The same rule as a test, for ids that do not arrive as a declared path parameter
    (the console's pages answer a bad id with their own 404 page)."""
    return 0 < len(value) <= MAX_ID_CHARS and _ID.match(value) is not None


def id_path(what: str) -> Any:
    """A ``Path(...)`` declaration for an id named ``what`` (``"task id"``)."""
    return Path(
        min_length=1,
        max_length=MAX_ID_CHARS,
        pattern=ID_PATTERN,
        description=f"The {what}: 1–{MAX_ID_CHARS} characters, no control characters.",
    )


TaskIdPath = Annotated[str, id_path("task id")]
SessionIdPath = Annotated[str, id_path("session id")]
KeyIdPath = Annotated[str, id_path("API key id")]
