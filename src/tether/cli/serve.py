"""``tether serve`` (the HTTP service with embedded workers) and ``tether keys`` (its API keys)."""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated

import typer
from rich.table import Table

from tether import errors, redact
from tether.cli import JsonOpt, StoreOpt, _call_store_at, _fail, _print_json, app, err, out
from tether.cli.options import check_options
from tether.cli.spec import build_runtime
from tether.execution.settings import ExecutionSettings
from tether.observe.logging import configure_logging
from tether.observe.setup import setup_observability
from tether.runtime import default_store_url
from tether.server import keys as api_keys
from tether.server.config import ServerConfig
from tether.server.service import Service
from tether.store.base import ApiKey

OPERATOR_TENANT = "*"
"""The tenant label of an operator key (it acts for no tenant)."""

keys_app = typer.Typer(help="API keys of the HTTP service (each maps to one tenant).")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    specs: Annotated[
        list[str], typer.Argument(help="One or more path/to/file.py:name or module:name.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    workers: Annotated[
        int, typer.Option(min=0, help="Embedded workers (0: API only; run `tether worker`).")
    ] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks each worker runs at once.")] = 8,
    worker_id: Annotated[
        str | None, typer.Option(help="Stable id of the first embedded worker.")
    ] = None,
    lease_ttl: Annotated[float, typer.Option(help="Seconds a lease lives without renewal.")] = 10.0,
    grace: Annotated[
        float, typer.Option(help="Seconds in-flight steps may finish on SIGTERM.")
    ] = 30.0,
    poll: Annotated[float, typer.Option(help="Seconds between looks for work when idle.")] = 0.25,
    drain_delay: Annotated[
        float,
        typer.Option(help="On SIGTERM, keep answering (readyz 503) at least this many seconds."),
    ] = 0.0,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")] = 1 << 20,
    sse_max_seconds: Annotated[
        float, typer.Option(help="An event stream asks its client to reconnect after this.")
    ] = 300.0,
    log_json: Annotated[bool, typer.Option("--log-json/--log-text", help="Log format.")] = True,
    store: StoreOpt = None,
) -> None:
    """Serve the HTTP API (and run embedded workers); SIGTERM drains, then exits 0."""
    configure_logging("INFO", json=log_json)
    try:
        check_options(port=port)
        execution = ExecutionSettings(lease_ttl=lease_ttl, drain_grace=grace, poll_interval=poll)
        sock = listen(host, port)
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    try:
        runtime = build_runtime(specs, store)
        obs = setup_observability(extra=[runtime.observers])
    except errors.TetherError as exc:
        sock.close()
        raise _fail(exc) from exc
    config = ServerConfig(
        store_url=runtime.store_url,
        host=host,
        port=port,
        workers=workers,
        concurrency=concurrency,
        worker_id=worker_id,
        execution=execution,
        max_body_bytes=max_body_bytes,
        sse_max_seconds=sse_max_seconds,
        drain_delay=drain_delay,
    )

    def announce(line: str) -> None:
        err.print(f"tether serve: {line}", highlight=False)

    service = Service(
        config,
        runtime.workflows,
        specs=runtime.specs,
        metrics=obs.metrics,
        observers=obs.observers,
        announce=announce,
        runtime=runtime,
    )
    try:
        asyncio.run(service.run(sock))
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    finally:
        obs.close()
    raise typer.Exit(0)


def listen(host: str, port: int) -> socket.socket:
    """The socket ``serve`` listens on, bound before anything starts: a port in use is
    one clear line, not uvicorn's exit after the store and workers were set up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise errors.InvalidInput(
            f"cannot listen on {host}:{port} ({exc.strerror}): is another server using it? "
            "choose another --port (or --host)"
        ) from exc


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="The tenant the key acts for.")] = None,
    operator: Annotated[
        bool, typer.Option("--operator", help="A console key that sees every tenant.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="A label to tell keys apart.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an API key for TENANT (or an operator key) and print it once (only its hash
    is stored)."""
    if operator == (tenant is not None):
        err.print("[red]error[/] give either --tenant T or --operator (not both)")
        raise typer.Exit(2)
    if tenant is not None and (not tenant.strip() or tenant == OPERATOR_TENANT):
        err.print(f"[red]error[/] --tenant must be a name, not empty or {OPERATOR_TENANT!r}")
        raise typer.Exit(2)
    owner = OPERATOR_TENANT if operator else str(tenant)
    made = api_keys.new_key()
    try:
        record: ApiKey = _call_store_at(
            store,
            lambda s: s.create_api_key(
                owner, made.key_hash, prefix=made.prefix, name=name, operator=operator
            ),
            existing=False,
        )
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json({**record.to_public(), "key": made.key})
        return
    who = "operator key (every tenant, console only)" if operator else f"key for tenant {tenant}"
    err.print(
        f"{who} {record.id} (store {redact.url(store or default_store_url())}); "
        "it is shown only now:",
        highlight=False,
    )
    out.print(made.key, highlight=False)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (never the keys themselves), newest first."""
    try:
        found: list[ApiKey] = _call_store_at(store, lambda s: s.list_api_keys(tenant=tenant))
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json([k.to_public() for k in found])
        return
    table = Table("id", "tenant", "prefix", "name", "status")
    for k in found:
        table.add_row(
            k.id,
            k.tenant,
            k.prefix + "…",
            k.name or "",
            ("active" if k.active else "revoked") + (" (operator)" if k.operator else ""),
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `tether keys list`).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key: requests with it answer 401 from now on."""
    try:
        record: ApiKey = _call_store_at(store, lambda s: s.revoke_api_key(key_id))
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json(record.to_public())
    else:
        out.print(f"key {record.id} of tenant {record.tenant} revoked", highlight=False)
