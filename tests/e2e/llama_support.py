"""A real llama.cpp server (``llama-cpp-python[server]``) on a tiny model the tests write.

``write_tiny_llama`` writes a random-weight llama GGUF (2 layers, 64 wide, a 259-token
byte-level vocabulary, a ChatML template that renders tool calls and tool results), so
no model is ever downloaded. Its text is garbage, but its *behaviour* is fixed by
construction: every token embedding carries a large constant in dimension 0 and the
blocks' output projections are near zero, so the final hidden state always points the
same way, and one output row decides whether the end-of-turn token wins every step:

- ``terse``: ``<|im_end|>`` always wins, so each answer ends at once (``finish_reason``
  ``"stop"``, empty content);
- ``chatty``: ``<|im_end|>`` never wins, so every answer runs to ``max_tokens``
  (``finish_reason`` ``"length"``).

``LlamaServer`` runs ``python -m llama_cpp.server`` with both models (a config file;
the request's ``model`` picks one) on a free port, and stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gguf
import httpx
import numpy as np

N_CTX = 1024
"""The context the server gives each model, in tokens (one token per byte of text)."""

CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.content %}{{ m.content }}{% endif %}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}"
    "<tool_call>{{ c.function.name }} {{ c.function.arguments }}</tool_call>"
    "{% endfor %}{% endif %}"
    "{% if m.role == 'tool' %} ({{ m.tool_call_id }}){% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: one printable character per byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    table = dict(zip(keep, (chr(c) for c in chars), strict=True))
    return [table[b] for b in range(256)]


def write_tiny_llama(path: Path, *, ends_turns: bool, seed: int = 7) -> Path:
    """Write the tiny model to ``path``; ``ends_turns`` picks terse (True) or chatty."""
    rng = np.random.default_rng(seed)
    tokens = [*_byte_tokens(), "Ġt", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    types = [gguf.TokenType.NORMAL] * 257 + [gguf.TokenType.CONTROL] * 3
    im_end = tokens.index("<|im_end|>")
    n_vocab, n_embd, n_ff, n_layer, n_head = len(tokens), 64, 128, 2, 4

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tether-tiny")
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(im_end)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray[Any, Any]:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embd = rand(n_vocab, n_embd, scale=0.1)
    embd[:, 0] = 10.0  # the constant direction every hidden state keeps
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    out = rand(n_vocab, n_embd, scale=0.5)
    out[:, 0] = rng.uniform(-0.5, 0.5, n_vocab).astype(np.float32)
    out[im_end, :] = 0.0
    out[im_end, 0] = 50.0 if ends_turns else -50.0
    for special in ("<|im_start|>", "<|endoftext|>"):
        out[tokens.index(special), :] = 0.0
        out[tokens.index(special), 0] = -50.0
    w.add_tensor("output.weight", out)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"blk.{i}.{name}.weight", rand(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", rand(n_embd, n_embd, scale=0.001))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rand(n_embd, n_ff, scale=0.001))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` serving the terse and the chatty model."""

    def __init__(self, workdir: Path, *, n_ctx: int = N_CTX) -> None:
        self.port = free_port()
        self.log = workdir / "llama-server.log"
        models = [
            {
                "model": str(write_tiny_llama(workdir / f"{alias}.gguf", ends_turns=ends)),
                "model_alias": alias,
                "n_ctx": n_ctx,
                "n_threads": 1,
                "n_batch": 128,
                "verbose": False,
            }
            for alias, ends in (("terse", True), ("chatty", False))
        ]
        config = {"host": "127.0.0.1", "port": self.port, "models": models}
        self.config = workdir / "llama-server.json"
        self.config.write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, deadline_s: float = 120.0) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "llama server exited (is llama-cpp-python[server] installed? `make llama` "
                    f"installs it): {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama server not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
