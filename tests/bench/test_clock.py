"""The benchmark's step clock keeps marks only while the per-step figure records, so
the other figures' steps do not pile up in the memory the RSS figure measures; the
message bodies are made once per index and are the same on every call."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402


def test_the_clock_records_only_between_start_and_stop() -> None:
    clock = common.StepClock()
    for h in range(5):
        clock.enter(h)
        clock.exit()
    assert clock.marks == []
    clock.start()
    for h in range(5):
        clock.enter(h)
        clock.exit()
    clock.stop()
    clock.enter(9)
    clock.exit()
    assert [m[0] for m in clock.marks] == [0, 1, 2, 3, 4]
    assert clock.overhead_at(1, 3) is not None
    clock.start()
    assert clock.marks == []


def test_bodies_are_deterministic_distinct_and_about_the_message_size() -> None:
    assert common.body(7) is common.body(7)
    assert common.body(7) != common.body(8)
    assert len(common.body(3)) == common.BODY_CHARS
