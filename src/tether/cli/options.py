"""Numbers on the command line that cannot work, refused before anything starts."""

from __future__ import annotations

from tether import errors

MAX_LIMIT = 100_000
"""The most rows ``--limit`` may ask for, on either engine."""


def check_options(
    *,
    concurrency: int | None = None,
    metrics_port: int | None = None,
    port: int | None = None,
    limit: int | None = None,
) -> None:
    """Raise ``InvalidInput`` naming the first option out of range."""
    if concurrency is not None and concurrency < 1:
        raise errors.InvalidInput(f"--concurrency must be at least 1, not {concurrency}")
    for name, value, low in (("--metrics-port", metrics_port, 0), ("--port", port, 0)):
        if value is not None and not low <= value <= 65535:
            raise errors.InvalidInput(
                f"{name} must be a TCP port from {low} to 65535 (0: any free port), not {value}"
            )
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidInput(f"--limit must be from 1 to {MAX_LIMIT}, not {limit}")
