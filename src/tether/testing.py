"""Helpers for testing agents: a stand-in OpenAI-compatible model server.

``StandInModelServer`` is a real HTTP server on 127.0.0.1 (an ephemeral port by
default), run in a thread. It answers ``POST /v1/chat/completions`` from a
``ScriptedModel``, ``GET /v1/models`` and ``POST /v1/embeddings`` (deterministic
hashed bag-of-words vectors), and can be told to fail on purpose::

    from tether.testing import Fault, StandInModelServer

    with StandInModelServer(["hello"], context_window=4096) as server:
        server.inject(Fault.status(429, retry_after=1), Fault.reset())
        model = OpenAIModel(base_url=server.base_url, model="any")
        ...
        assert server.count == 3

A request with ``"stream": true`` is answered as OpenAI streams (server-sent
``chat.completion.chunk`` events, a usage chunk when ``stream_options.include_usage``,
then ``[DONE]``); ``Fault.cut()`` ends such a stream half-way without a finish_reason.

Faults apply, in order, to the next chat-completion requests. Every chat request
body is recorded in ``server.requests`` (embedding requests in
``server.embedding_requests``). With ``context_window=N`` a request whose
estimated prompt tokens (``tether.models.scripted.estimate_tokens``) plus
``max_tokens`` exceed N is refused with HTTP 400, word for word as vLLM does, and
``GET /v1/models`` publishes N as ``max_model_len``, as vLLM does. With
``truncate_to=N`` a longer prompt is answered as a server that cuts prompts silently
(Ollama) would: ``usage.prompt_tokens`` reports only N.

Run it on its own with ``python -m tether.testing --port 8000 --reply "done"``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import http
import json
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tether import errors, types
from tether.models import openai, scripted

__all__ = ["Fault", "StandInModelServer", "hashed_embedding", "main"]

FaultKind = Literal["status", "reset", "delay", "length", "garbage", "cut"]

_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", "forbidden"),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One misbehaviour of the stand-in server, for one chat-completion request."""

    kind: FaultKind
    status_code: int = 200
    retry_after: float | str | None = None
    body: str | dict[str, Any] | None = None
    seconds: float = 0.0
    text: str = ""

    @staticmethod
    def status(
        code: int,
        retry_after: float | str | None = None,
        body: str | dict[str, Any] | None = None,
    ) -> Fault:
        """Answer HTTP ``code`` with an OpenAI-style JSON error body (or ``body``:
        a dict is sent as JSON, a str verbatim), and ``Retry-After`` when given
        (seconds, or a str such as an HTTP-date)."""
        if not 400 <= code <= 599:
            raise ValueError(f"Fault.status needs a 4xx or 5xx code, not {code}")
        return Fault("status", status_code=code, retry_after=retry_after, body=body)

    @staticmethod
    def reset() -> Fault:
        """Close the connection without sending any response."""
        return Fault("reset")

    @staticmethod
    def delay(seconds: float) -> Fault:
        """Wait ``seconds`` before answering normally."""
        return Fault("delay", seconds=seconds)

    @staticmethod
    def length(text: str = "This answer was cut off") -> Fault:
        """Answer ``text`` with finish_reason ``"length"`` (cut off by the token limit)."""
        return Fault("length", text=text)

    @staticmethod
    def cut() -> Fault:
        """Answer a streaming request with the first half of its chunks, then end the
        stream without a finish_reason (a connection cut mid-answer)."""
        return Fault("cut")

    @staticmethod
    def garbage(body: str = "<html><body>upstream proxy error</body></html>") -> Fault:
        """Answer 200 with a body that is not a chat completion."""
        return Fault("garbage", body=body)


def hashed_embedding(text: str, dimensions: int = 64) -> list[float]:
    """A deterministic bag-of-words vector: each lower-cased word (``\\w+``) adds ±1 at
    a slot chosen by its BLAKE2b hash (the sign from another bit of the hash); the
    result is L2-normalised. Text without words gives the zero vector."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[h % dimensions] += -1.0 if h >> 63 else 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    reset: bool = False


def _json_answer(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Answer:
    return _Answer(status, json.dumps(data).encode(), headers=headers)


def _error_answer(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
) -> _Answer:
    return _json_answer(
        status, {"error": {"message": message, "type": kind, "param": None, "code": code}}
    )


def _stream_answer(
    ident: str,
    model: str,
    message: types.Message,
    finish: str,
    usage: types.Usage | None,
    *,
    cut: bool,
) -> _Answer:
    """The answer as OpenAI streams it: a role chunk, the text a word at a time, the
    tool calls, the finish chunk, a usage chunk when asked for, then ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": w}) for w in re.findall(r"\S+\s*", message.content or "")]
    for i, call in enumerate(message.tool_calls):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                    ]
                }
            )
        )
    if cut:
        chunks = chunks[: max(1, (len(chunks) + 1) // 2)]
    else:
        chunks.append(chunk({}, finish))
        if usage is not None:
            chunks.append(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": {**usage.to_dict(), "total_tokens": usage.total_tokens},
                }
            )
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    if not cut:
        lines.append("data: [DONE]\n\n")
    return _Answer(200, "".join(lines).encode(), content_type="text/event-stream")


def _request_from_wire(body: dict[str, Any]) -> types.ModelRequest:
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ValueError("'messages' must be a non-empty list")
    raw_tools = body.get("tools") or []
    if not isinstance(raw_tools, list):
        raise ValueError("'tools' must be a list")
    tools: list[types.ToolSpec] = []
    for position, tool in enumerate(raw_tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f"tools[{position}] is not a function tool")
        tools.append(
            types.ToolSpec(
                name=function["name"],
                description=str(function.get("description") or ""),
                parameters=dict(function.get("parameters") or {}),
            )
        )
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError("'max_tokens' must be a positive integer")
    temperature = body.get("temperature")
    return types.ModelRequest(
        messages=tuple(openai.message_from_wire(m) for m in raw_messages),
        tools=tuple(tools),
        max_tokens=max_tokens,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        tool_choice=_tool_choice_from_wire(body.get("tool_choice"), tools),
        output_schema=_output_schema_from_wire(body.get("response_format")),
    )


def _tool_choice_from_wire(raw: Any, tools: Sequence[types.ToolSpec]) -> str | None:
    """OpenAI's rules: a mode, or ``{"type": "function", "function": {"name": …}}`` naming
    an offered tool; any ``tool_choice`` without tools is refused."""
    if raw is None:
        return None
    if not tools:
        raise ValueError("'tool_choice' is only allowed when 'tools' are specified")
    if isinstance(raw, str) and raw in types.TOOL_CHOICE_MODES:
        return raw
    function = raw.get("function") if isinstance(raw, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or name not in {t.name for t in tools}:
        raise ValueError(f"'tool_choice' {raw!r} names no offered tool")
    return name


def _output_schema_from_wire(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and raw.get("type") == "json_schema":
        spec = raw.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            return {"name": str(spec.get("name") or "output"), "schema": spec["schema"]}
    if isinstance(raw, dict) and raw.get("type") == "json_object":
        return {"name": "output", "schema": raw.get("schema") or {"type": "object"}}
    if isinstance(raw, dict) and raw.get("type") == "text":
        return None
    raise ValueError(f"'response_format' {raw!r} is not text, json_object or json_schema")


class StandInModelServer:
    """A real OpenAI-compatible HTTP server for tests (see the module docstring).

    ``script`` is a ``ScriptedModel``, or anything ``ScriptedModel`` accepts (a
    callable ``(ModelRequest) -> Reply``, a sequence of replies, one reply). The
    server starts at construction; ``close()`` (or leaving the ``with`` block)
    stops it and closes every connection."""

    def __init__(
        self,
        script: scripted.ScriptedModel | scripted.Script | scripted.Reply = "ok",
        *,
        context_window: int | None = None,
        truncate_to: int | None = None,
        model_name: str = "stand-in",
        dimensions: int = 64,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.context_window = context_window
        self.truncate_to = truncate_to
        """Like Ollama's ``num_ctx``: a longer prompt is answered anyway, its usage
        reporting only the ``truncate_to`` tokens a server that cuts would have kept."""
        self.model_name = model_name
        self.dimensions = dimensions
        self._host = host
        self._model = self._as_model(script)
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque()
        self._requests: list[dict[str, Any]] = []
        self._embedding_requests: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tether-stand-in-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    def _as_model(
        self, script: scripted.ScriptedModel | scripted.Script | scripted.Reply
    ) -> scripted.ScriptedModel:
        if isinstance(script, scripted.ScriptedModel):
            return script
        return scripted.ScriptedModel(script, name=self.model_name)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: pass it as ``OpenAIModel(base_url=...)``."""
        return f"http://{self._host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat-completion request body received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._embedding_requests)

    @property
    def count(self) -> int:
        """How many chat-completion requests arrived (faulted ones included)."""
        with self._lock:
            return len(self._requests)

    def inject(self, *faults: Fault) -> None:
        """Apply these faults, in order, to the next chat-completion requests."""
        with self._lock:
            self._faults.extend(faults)

    def use(self, script: scripted.ScriptedModel | scripted.Script | scripted.Reply) -> None:
        """Answer from now on with another script."""
        model = self._as_model(script)
        with self._lock:
            self._model = model

    def close(self) -> None:
        """Stop serving, cut open connections and join every thread."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> StandInModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StandInModelServer({self.base_url!r})"

    # ---- answers (called from handler threads) ------------------------------

    def answer_chat(self, body: Any) -> _Answer:
        with self._lock:
            self._requests.append(body if isinstance(body, dict) else {"_invalid": body})
            fault = self._faults.popleft() if self._faults else None
            model = self._model
        if fault is not None:
            if fault.kind == "reset":
                return _Answer(0, reset=True)
            if fault.kind == "status":
                return self._fault_status(fault)
            if fault.kind == "garbage":
                return _Answer(200, str(fault.body).encode(), content_type="text/html")
            if fault.kind == "delay" and self._stopping.wait(fault.seconds):
                return _Answer(0, reset=True)
        if not isinstance(body, dict):
            return _error_answer(400, "The request body must be a JSON object.")
        try:
            request = _request_from_wire(body)
        except ValueError as exc:
            return _error_answer(400, f"Invalid request: {exc}")
        prompt = scripted.estimate_tokens(request.messages, request.tools)
        wanted = request.max_tokens or 0
        if self.context_window is not None and prompt + wanted > self.context_window:
            return _json_answer(
                400,
                {
                    "object": "error",
                    "message": (
                        f"This model's maximum context length is {self.context_window} tokens. "
                        f"However, you requested {prompt + wanted} tokens ({prompt} in the "
                        f"messages, {wanted} in the completion). Please reduce the length of "
                        "the messages or completion."
                    ),
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            )
        try:
            response = model.reply(request)
        except errors.RateLimited as exc:
            after = () if exc.retry_after is None else (("Retry-After", f"{exc.retry_after:g}"),)
            answer = _error_answer(429, exc.message, "requests", "rate_limit_exceeded")
            return _Answer(429, answer.body, headers=after)
        except (errors.ContextOverflow, errors.ModelRejected, errors.InputError) as exc:
            return _error_answer(400, exc.message)
        except errors.TetherError as exc:
            return _error_answer(500, exc.message, "server_error")
        message = response.message
        finish = response.finish_reason
        if fault is not None and fault.kind == "length":
            message = types.Message(role="assistant", content=fault.text)
            finish = "length"
        wire = openai.message_to_wire(message)
        wire["content"] = message.content  # OpenAI answers a tools-only turn with null
        wire.pop("tool_call_id", None)
        usage = response.usage or types.Usage(prompt, scripted.completion_tokens(message))
        if self.truncate_to is not None and usage.prompt_tokens > self.truncate_to:
            usage = types.Usage(self.truncate_to, usage.completion_tokens)
        if body.get("stream"):
            options = body.get("stream_options")
            return _stream_answer(
                f"chatcmpl-{self.count}",
                str(body.get("model") or self.model_name),
                message,
                finish,
                usage if isinstance(options, dict) and options.get("include_usage") else None,
                cut=fault is not None and fault.kind == "cut",
            )
        return _json_answer(
            200,
            {
                "id": f"chatcmpl-{self.count}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or self.model_name),
                "choices": [{"index": 0, "message": wire, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                },
            },
        )

    def _fault_status(self, fault: Fault) -> _Answer:
        code = fault.status_code
        headers: tuple[tuple[str, str], ...] = ()
        if fault.retry_after is not None:
            value = fault.retry_after
            headers = (("Retry-After", value if isinstance(value, str) else f"{value:g}"),)
        if isinstance(fault.body, str):
            return _Answer(code, fault.body.encode(), content_type="text/plain", headers=headers)
        if isinstance(fault.body, dict):
            return _json_answer(code, fault.body, headers)
        message, kind, err_code = _DEFAULT_ERRORS.get(
            code,
            (
                http.HTTPStatus(code).phrase + ".",
                "server_error" if code >= 500 else "invalid_request_error",
                None,
            ),
        )
        answer = _error_answer(code, message, kind, err_code)
        return _Answer(code, answer.body, headers=headers)

    def answer_embeddings(self, body: Any) -> _Answer:
        with self._lock:
            self._embedding_requests.append(body if isinstance(body, dict) else {"_invalid": body})
        if not isinstance(body, dict):
            return _error_answer(400, "The request body must be a JSON object.")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            return _error_answer(400, "'input' must be a string or a list of strings.")
        dimensions = body.get("dimensions", self.dimensions)
        if not isinstance(dimensions, int) or not 1 <= dimensions <= 8192:
            return _error_answer(400, "'dimensions' must be an integer from 1 to 8192.")
        tokens = sum(scripted.text_tokens(t) for t in inputs)
        return _json_answer(
            200,
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": hashed_embedding(t, dimensions),
                    }
                    for i, t in enumerate(inputs)
                ],
                "model": str(body.get("model") or self.model_name),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def answer_models(self) -> _Answer:
        entry: dict[str, Any] = {
            "id": self.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "tether",
        }
        if self.context_window is not None:
            entry["max_model_len"] = self.context_window
        return _json_answer(200, {"object": "list", "data": [entry]})


class _HTTPServer(ThreadingHTTPServer):
    """Joins its handler threads on close and can cut kept-alive connections."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: StandInModelServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _send(self, answer: _Answer) -> None:
        if answer.reset:
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def do_GET(self) -> None:
        if self._path() == "/v1/models":
            self._send(self.server.owner.answer_models())
        else:
            self._send(_error_answer(404, f"No route GET {self._path()}.", code="not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self._path()
        if path == "/v1/chat/completions":
            self._send(self.server.owner.answer_chat(body))
        elif path == "/v1/embeddings":
            self._send(self.server.owner.answer_embeddings(body))
        else:
            self._send(_error_answer(404, f"No route POST {path}.", code="not_found"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tether.testing``: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tether.testing",
        description="A stand-in OpenAI-compatible model server that always gives one reply.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--reply", default="ok", help="the answer to every chat request")
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--dimensions", type=int, default=64, help="embedding size")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with StandInModelServer(
        args.reply,
        context_window=args.context_window,
        dimensions=args.dimensions,
        host=args.host,
        port=args.port,
    ) as server:
        print(f"stand-in model server listening at {server.base_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
