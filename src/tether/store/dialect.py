"""What one engine's SQL says differently, as data the store's programs are given.

The rules (``core`` and the program modules) are written once in the SQL both engines
speak; where the engines disagree on a function or a plan, the rule takes the engine's
``Dialect`` and asks it. Both engines' instances are here, side by side (``SQLITE``,
``POSTGRES``); each driver names its own (``SQLiteStore.dialect``), and nothing else
in the store's rules branches on the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tether.store.program import Query


@dataclass(frozen=True, slots=True)
class Dialect:
    engine: str
    """The migrations folder, ``sqlite`` or ``postgres``."""
    tables: str
    """A statement listing the store's tables (one ``name`` column)."""
    newest_sessions: str
    """ORDER BY of sessions, newest first: creation time, then the order of insertion
    (SQLite's ``rowid``; PostgreSQL has none, so ties fall back to the id)."""
    newest_keys: str
    """ORDER BY of API keys, newest first (PostgreSQL's keys have a ``position``)."""
    messages_at: str
    """The messages of session ``:session`` at the seqs of ``:seqs`` (``seq_list``'s
    value): one primary-key seek per seq on either engine."""
    seq_list: Callable[[Sequence[int]], Any]
    """``:seqs``'s value for ``messages_at``: a JSON array (SQLite) or an array (PostgreSQL)."""
    json_entries: str
    """A FROM item over the JSON object in column ``{}``, with columns ``key`` and ``value``."""
    entry_text: str
    """The text of a ``json_entries`` value named ``{}`` (numbers as JSON writes them)."""
    octets: str
    """The length in bytes of the text or blob value ``{}``."""

    def messages(self, session_id: str, seqs: Sequence[int]) -> Query:
        """The session's messages at ``seqs`` (``messages_at`` with its parameters)."""
        return Query(self.messages_at, {"session": session_id, "seqs": self.seq_list(seqs)})


def _json_list(seqs: Sequence[int]) -> str:
    return json.dumps(list(seqs), separators=(",", ":"))


SQLITE = Dialect(
    engine="sqlite",
    tables="SELECT name FROM sqlite_master WHERE type = 'table'",
    newest_sessions="created_at DESC, rowid DESC",
    newest_keys="created_at DESC, rowid DESC",
    # CROSS JOIN keeps json_each outside: one primary-key seek per seq, where a plain
    # JOIN let SQLite scan the whole session's messages for each seq
    messages_at="SELECT m.* FROM json_each(:seqs) j CROSS JOIN messages m"
    " ON m.session_id = :session AND m.seq = j.value",
    seq_list=_json_list,
    json_entries="json_each({})",
    entry_text="CAST({}.value AS TEXT)",
    octets="length(CAST({} AS BLOB))",
)

POSTGRES = Dialect(
    engine="postgres",
    tables="SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()",
    newest_sessions="created_at DESC, id DESC",
    newest_keys="created_at DESC, position DESC",
    messages_at="SELECT * FROM messages WHERE session_id = :session AND seq = ANY(:seqs)",
    seq_list=list,
    json_entries="jsonb_each_text({}::jsonb)",
    entry_text="{}.value",
    octets="octet_length({})",
)
