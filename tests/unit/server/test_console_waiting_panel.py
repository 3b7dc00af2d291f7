"""The waiting box of a task's page: what each kind of wait shows, and that what a
model wrote (a tool's arguments, a signal's name) is escaped."""

from __future__ import annotations

import dataclasses
from typing import Any

from tether import types
from tether.server.console import pages_waiting, session

VIEWER = session.Viewer(tenant="acme", operator=False, csrf="c" * 64, key_prefix="tk_x")
TASK = types.TaskRecord(
    id="t1", tenant="acme", session_id="s1", agent="a", status="waiting", input="go",
    created_at=0.0, updated_at=0.0,
)  # fmt: skip


def _panel(**changes: Any) -> str:
    return str(pages_waiting.panel(dataclasses.replace(TASK, **changes), VIEWER))


def test_an_approval_shows_the_call_escaped_with_both_answers() -> None:
    about = {"tool": "<b>refund</b>", "arguments": '{"note": "<script>x</script>"}'}
    wait = {"kind": "signal", "name": "approval.3", "step": 3, "since": 1.0, "about": about}
    page = _panel(wait=wait)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;refund" in page
    assert (
        'action="/console/tasks/t1/approve"' in page and 'action="/console/tasks/t1/deny"' in page
    )
    assert page.count('name="wait" value="approval.3"') == 2 and page.count('name="csrf"') == 2
    assert "signal-data" not in page


def test_an_approval_parked_before_waits_kept_the_call_points_at_the_event() -> None:
    page = _panel(wait={"kind": "signal", "name": "approval.1", "step": 1, "since": 1.0})
    assert "tool.approval_requested event" in page and 'id="approve"' in page


def test_a_named_signal_gets_a_form_and_a_sleep_only_its_time() -> None:
    page = _panel(wait={"kind": "signal", "name": "go.ahead", "step": 0, "deadline": 7.0})
    assert 'action="/console/tasks/t1/signal"' in page and "Send go.ahead" in page
    assert "1970-01-01 00:00:07Z" in page and 'id="approve"' not in page
    slept = _panel(wait={"kind": "sleep", "name": "sleep", "step": 0, "deadline": 60.0})
    assert "sleeps until" in slept and "<form" not in slept


def test_nothing_for_a_task_that_does_not_wait() -> None:
    assert _panel(status="completed", wait={"kind": "signal", "name": "x"}) == ""
    assert _panel(wait=None) == ""
