"""Live progress of a running task on the terminal (stderr), drawn from its events."""

from __future__ import annotations

from rich.console import Console

from tether.observe import events


class ProgressPrinter:
    """An observer that prints one line per step as it happens."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.replayed = 0
        self._mid_line = False

    def on_event(self, event: events.TaskEvent) -> None:
        if event.name == events.MODEL_DELTA:  # streamed answer text, as it comes
            text = str(event.data.get("text", ""))
            self.console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
            self._mid_line = True
            return
        if self._mid_line:
            self.console.print()
            self._mid_line = False
        what = f"{event.step_kind or ''} {event.step_name or ''}".strip()
        step = f"step {event.step:>3}" if event.step is not None else ""
        if event.name == events.STEP_STARTED:
            attempt = f" (attempt {event.attempt})" if (event.attempt or 1) > 1 else ""
            self.console.print(f"[dim]…[/] {step} {what}{attempt}", highlight=False)
        elif event.name == events.STEP_COMPLETED:
            duration = event.data.get("duration") or 0.0
            self.console.print(
                f"[green]✓[/] {step} {what} [dim]{duration:.2f}s[/]", highlight=False
            )
        elif event.name == events.STEP_REPLAYED:
            self.replayed += 1
            self.console.print(
                f"[cyan]↺[/] {step} {what} [dim]replayed from the journal[/]", highlight=False
            )
        elif event.name == events.STEP_RETRYING:
            err = event.data.get("error") or {}
            delay = event.data.get("delay") or 0.0
            self.console.print(
                f"[yellow]↻[/] {step} {what}: {err.get('error_class')} — retrying in {delay:.2f}s",
                highlight=False,
            )
        elif event.name == events.STEP_FAILED:
            err = event.data.get("error") or {}
            self.console.print(
                f"[red]✗[/] {step} {what}: {err.get('error_class')}: {err.get('message')}",
                highlight=False,
            )
        elif event.name == events.TASK_RECOVERED:
            self.console.print(
                f"[cyan]resuming[/] from step {event.data.get('from_step')} "
                f"({event.data.get('reason')})",
                highlight=False,
            )
        elif event.name == events.TASK_WAITING:
            name = event.data.get("wait_name")
            how = (
                f"signal {name!r} (`tether signal {event.task_id} {name}`)"
                if event.data.get("wait_kind") == "signal"
                else "its time"
            )
            self.console.print(f"[yellow]waiting[/] for {how}; no worker is held", highlight=False)
        elif event.name == events.TOOL_APPROVAL_REQUESTED:
            self.console.print(
                f"[yellow]approval[/] {event.data.get('tool')}({event.data.get('arguments')}): "
                f"`tether approve {event.task_id}` or `tether deny {event.task_id} --reason …`",
                highlight=False,
            )
        elif event.name in (
            events.CONTEXT_PRESSURE,
            events.CONTEXT_COMPACTED,
            events.OUTPUT_TRUNCATED,
        ):
            self.console.print(f"[magenta]{event.name}[/] {event.data}", highlight=False)
