"""Versioned payloads: reading what older releases stored, refusing what newer ones did.

Every JSON payload tether stores carries the format version it was written with
(the ``payload_version`` column of ``messages``, ``steps`` and ``events``); this
release writes ``types.PAYLOAD_VERSION``. A reader turns an older payload into the
current shape by applying upcasters one version at a time: the upcaster registered
for ``(kind, v)`` takes a payload of version ``v`` and returns it in version
``v + 1``. A payload newer than this code, or an older one with a missing link in
the chain, raises ``PayloadVersionError`` naming the table, the row and both
versions; it never becomes ``None`` or an empty history.

What each kind's payload is, in format version 2 (this release):

- ``message``: the ``payload`` column, ``Message.to_dict()``:
  ``{"role", "content", "tool_calls"?, "tool_call_id"?, "name"?, "raw"?}`` (``raw``, an
  integration's own JSON of the message, is optional and additive: readers that do not
  know it read the rest unchanged).
- ``step``: the step row's JSON columns as one object:
  ``{"output", "error", "usage", "message_seqs"}`` (``output`` is the step's result
  as ``run_step`` recorded it, except that a copy of a message the step appended is a
  reference ``{"$message": i}`` to the message at ``message_seqs[i]`` and an output
  that could be mistaken for one is escaped as ``{"$literal": output}``: see
  ``step_payload``, which ``rows`` uses to give readers the output as recorded;
  ``error`` an ``errors.error_record``; ``usage`` ``Usage.to_dict()`` or null;
  ``message_seqs`` the seqs of the messages it wrote).
- ``event``: the ``data`` column, the event's data object.

History and the upcasters this release ships:

- version 1 (tether 0.1.0): the same shapes, but a step's ``output`` held full
  copies of its messages. ``step`` 1 → 2 is ``step_payload.from_v1`` (the copy is
  kept, escaped where it could read as a reference); ``message`` and ``event``
  payloads did not change, so their 1 → 2 upcasters return them as they are.

A change to one of these shapes bumps ``types.PAYLOAD_VERSION`` and registers, here,
the upcaster from the previous version of every kind, with a test of its own::

    @REGISTRY.upcaster("message", 2)
    def _message_2_to_3(payload: Any) -> Any:
        return {**payload, "metadata": {}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from tether import errors, types
from tether.store import step_payload

__all__ = ["KINDS", "REGISTRY", "Kind", "Upcaster", "Upcasters"]

Kind = Literal["message", "step", "event"]
KINDS: tuple[Kind, ...] = ("message", "step", "event")

Upcaster = Callable[[Any], Any]
"""Takes a payload of version ``v`` (decoded JSON) and returns it in version ``v + 1``."""


class Upcasters:
    """A registry of upcasters ``(kind, from_version) -> fn`` up to ``current``."""

    def __init__(self, current: int = types.PAYLOAD_VERSION) -> None:
        self.current = current
        self._fns: dict[tuple[str, int], Upcaster] = {}

    def register(self, kind: Kind, from_version: int, fn: Upcaster) -> None:
        """Register ``fn`` to turn ``kind`` payloads of ``from_version`` into the next one."""
        if kind not in KINDS:
            raise errors.InvalidInput(f"unknown payload kind {kind!r}: one of {KINDS}")
        if not 0 <= from_version < self.current:
            raise errors.InvalidInput(
                f"an upcaster for {kind} payloads from version {from_version} makes no sense: "
                f"this tether writes version {self.current}, so it must start below it"
            )
        if (kind, from_version) in self._fns:
            raise errors.InvalidInput(
                f"an upcaster for {kind} payloads from version {from_version} is registered"
            )
        self._fns[(kind, from_version)] = fn

    def upcaster(self, kind: Kind, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of ``register``."""

        def wrap(fn: Upcaster) -> Upcaster:
            self.register(kind, from_version, fn)
            return fn

        return wrap

    def unregister(self, kind: Kind, from_version: int) -> None:
        self._fns.pop((kind, from_version), None)

    @contextmanager
    def registered(self, kind: Kind, from_version: int, fn: Upcaster) -> Iterator[None]:
        """``fn`` is registered inside the block only (tests use this)."""
        self.register(kind, from_version, fn)
        try:
            yield
        finally:
            self.unregister(kind, from_version)

    def missing(self, kind: Kind, version: int) -> int | None:
        """The first version from ``version`` up that has no way forward, or None when a
        payload of ``version`` can be read (newer than ``current``: ``version`` itself)."""
        if version > self.current:
            return version
        for v in range(version, self.current):
            if (kind, v) not in self._fns:
                return v
        return None

    def readable(self, kind: Kind, version: int) -> bool:
        return self.missing(kind, version) is None

    def upcast(self, kind: Kind, version: int, payload: Any, *, table: str, row: str) -> Any:
        """``payload`` (of ``version``) in the current format; raises ``PayloadVersionError``."""
        if version == self.current:
            return payload
        gap = self.missing(kind, version)
        if gap is not None:
            raise self.error(table, row, version, gap)
        for v in range(version, self.current):
            try:
                payload = self._fns[(kind, v)](payload)
            except Exception as exc:
                raise errors.PayloadVersionError(
                    f"table {table}, row {row}: upcasting its payload from version {v} to "
                    f"{v + 1} failed ({type(exc).__name__}: {exc}); the stored row is "
                    "unchanged: report this with the row, or restore the tether release "
                    "that wrote it"
                ) from exc
        return payload

    def error(self, table: str, row: str, version: int, gap: int) -> errors.PayloadVersionError:
        if version > self.current:
            return errors.PayloadVersionError(
                f"table {table}, row {row} was written with payload version {version}, "
                f"but this tether reads payload versions up to {self.current}: a newer "
                "tether wrote it; upgrade tether to read it (the row was left unchanged)"
            )
        return errors.PayloadVersionError(
            f"table {table}, row {row} was written with payload version {version}, and this "
            f"tether (payload version {self.current}) has no upcaster from version {gap}: "
            "the store holds a format no release of tether wrote, or this installation is "
            "damaged; upgrade or reinstall tether (the row was left unchanged)"
        )


REGISTRY = Upcasters()
"""The upcasters this release ships; ``rows`` applies them on every read."""


def _unchanged(payload: Any) -> Any:
    """Version 1 → 2 of a payload whose shape version 2 kept."""
    return payload


REGISTRY.register("message", 1, _unchanged)
REGISTRY.register("step", 1, step_payload.from_v1)
REGISTRY.register("event", 1, _unchanged)
