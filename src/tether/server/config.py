"""The knobs of ``tether serve``: where it listens, how many workers it embeds, its limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.execution.settings import ExecutionSettings


@dataclass(frozen=True, slots=True)
class ServerConfig:
    store_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """Embedded workers (0: API only, with separate ``tether worker`` processes)."""
    concurrency: int = 8
    """Tasks each embedded worker runs at once."""
    worker_id: str | None = None
    """Stable id of the first embedded worker (others get ``-2``, ``-3``…); default:
    the host and a free slot, as ``tether worker`` does."""
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    max_body_bytes: int = 1024 * 1024
    """A request body larger than this is refused with 413, before it is read."""
    sse_poll_interval: float = 0.25
    """Seconds between looks for new events on an open event stream."""
    sse_keepalive: float = 15.0
    """Seconds of silence after which a stream sends a comment, so proxies keep it open."""
    sse_max_seconds: float = 300.0
    """A stream ends after this long with ``stream.reconnect``; the client resumes with
    ``Last-Event-ID`` (on this or another instance) and loses nothing."""
    sse_max_streams_per_key: int = 32
    """Event streams one API key may hold open at once; more answer 429."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's headers; then the connection is closed."""
    body_timeout: float = 15.0
    """Seconds a client may pause while sending a request body; then it is answered 408."""
    drain_delay: float = 0.0
    """On SIGTERM, seconds the API keeps answering (``/readyz`` 503) before it stops
    listening, so a load balancer notices; the embedded workers' drain counts toward it."""
    shutdown_timeout: float = 10.0
    """Seconds uvicorn waits for open requests once it stops listening."""
