"""The llama.cpp backend: llama.cpp's own server, run in-process through xllamacpp (a prebuilt wheel).

Why this and not llama-cpp-python: the server already does what a classroom needs, in C++ and with the GIL released
while it works: parallel slots with continuous batching (requests that arrive while others generate join the same
decode batches), and ``n_cmpl`` completions of one prompt, whose prompt is evaluated once and its KV cache shared by
the child sequences. llama-cpp-python has no wheel (7 minutes of compiling on 2 cores) and its batched decoding would
be a per-token Python loop written here. Measured in bench/tutor_serving.py.

Every call is one streamed chat completion: text arrives piece by piece (one piece a token, or a few when a stop
sequence or a UTF-8 character is held back), and a cancelled call frees its sequences at the next piece.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence

from ..errors import ModelError
from ..io import remove_orphans
from ..tasks.tutor import DEFAULT_PROMPT, TutorPrompt
from .chat_engine import ChatEngineGenerator
from .generation import Generation

log = logging.getLogger(__name__)

# llama.cpp sequences decoded together: two 5-sample votes, or a vote and five streamed answers (each slot 2,048
# tokens of a unified KV cache: 0.6 GB for Qwen2.5-1.5B, f16).
DEFAULT_SLOTS = 10
# The engine is asked in-process only. xllamacpp always starts llama.cpp's HTTP listener, which has no scope rule,
# no limits and shows the model's path: it listens on a Unix socket in a folder only this user can enter
# (no TCP port), and answers nothing without a key that never leaves this process.
PRIVATE_PREFIX = "mathtune-llama-"
INSTALL = "pip install xllamacpp  (or `make install-all` in a checkout)"


class EngineError(ModelError):
    """llama.cpp refused or failed a completion (its message is kept)."""


def xllamacpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("xllamacpp") is not None


class LlamaCppGenerator(ChatEngineGenerator):
    """A GGUF model behind llama.cpp's server: thread-safe, ``slots`` sequences decoded together, ``sample`` draws k
    answers of one prompt as one batch."""

    backend = "llama.cpp"
    engine = "xllamacpp"  # which llama.cpp binding: results of another are not comparable in the benchmarks' caches
    parallel = True  # concurrent calls share decode batches (the transformers generator runs one at a time)

    def __init__(self, gguf_path: str | os.PathLike, system_prompt: str | None = None,
                 stops: Sequence[str] | None = None, threads: int | None = None, n_ctx: int = 2048,
                 tutor_prompt: TutorPrompt = DEFAULT_PROMPT, slots: int = DEFAULT_SLOTS):
        if not xllamacpp_available():
            raise ModelError(f"the llama.cpp backend needs xllamacpp: {INSTALL}")
        if not os.path.isfile(gguf_path):
            raise ModelError(f"{gguf_path}: GGUF file not found (export one with `mathtune export MODEL --gguf`)")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads stalled a problem for 465 s (DESIGN.md)
        import xllamacpp

        super().__init__(tutor_prompt, system_prompt, stops, workers=slots)
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf_path)
        params.n_parallel, params.kv_unified = slots, True
        params.n_ctx = n_ctx * slots
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads or os.cpu_count() or 1
        params.warmup, params.verbosity, params.endpoint_metrics = True, -1, False
        self._private = _private_folder()
        params.hostnames = [os.path.join(self._private, "engine.sock")]
        params.api_keys = [secrets.token_urlsafe(32)]
        self.server = xllamacpp.Server(params)
        self.path, self.slots, self.n_ctx = str(gguf_path), slots, n_ctx

    # -- one completion request ------------------------------------------------------------------------------------
    def _body(self, chat: list[dict], max_new_tokens: int, temperature: float, seed: int | None,
              stops: Sequence[str], ignore_eos: bool = False, n: int = 1) -> dict:
        body = super()._body(chat, max_new_tokens, temperature, seed, stops, ignore_eos, n)
        if "n" in body:
            body["n_cmpl"] = body.pop("n")  # llama.cpp's own name: one prompt, n sequences sharing its KV cache
        return body

    def _complete(self, body: dict, cancel: threading.Event | None = None, on_piece=None,
                  on_finish=None) -> list[Generation]:
        """The ``n`` answers of one request (index order); ``on_piece(index, text)`` sees each piece as it comes,
        ``on_finish(index, generation)`` each answer as it ends. Setting ``cancel`` ends every sequence of the
        request at its next token (those answers come back unfinished: ``finish`` None)."""
        n = body.get("n_cmpl", 1)
        texts, tokens, finish = [""] * n, [0] * n, [None] * n
        errors: list[str] = []
        seconds0 = time.perf_counter()

        def piece(chunk) -> bool:  # llama.cpp's callback: True stops the request and frees its sequences
            if not isinstance(chunk, dict) or "error" in chunk or "code" in chunk:
                errors.append(str(chunk.get("error", chunk) if isinstance(chunk, dict) else chunk)[:500])
                return True
            for choice in chunk.get("choices", []):
                i, text = choice.get("index", 0), (choice.get("delta") or {}).get("content")
                if text:
                    texts[i] += text
                    tokens[i] += 1
                    if on_piece is not None:
                        on_piece(i, text)
                if choice.get("finish_reason") and finish[i] is None:
                    finish[i] = choice["finish_reason"]
                    if on_finish is not None:
                        on_finish(i, Generation(texts[i], tokens[i], time.perf_counter() - seconds0,
                                                finish[i] == "length"))
            return bool(cancel is not None and cancel.is_set())

        start = time.perf_counter()
        self.server.handle_chat_completions(body, piece)
        if errors and not (cancel is not None and cancel.is_set()):
            raise EngineError(f"llama.cpp ({os.path.basename(self.path)}): {errors[0]}")
        seconds = time.perf_counter() - start  # llama.cpp leaves the stop sequence out of the text
        return [Generation(t, k, seconds, f == "length") for t, k, f in zip(texts, tokens, finish)]

    def close(self) -> None:
        super().close()
        self.server = None
        shutil.rmtree(self._private, ignore_errors=True)


def _private_folder() -> str:
    """A fresh 0700 folder for the engine's socket (``mathtune-llama-<pid>-<random>``), after removing those left
    by engines whose process is gone (killed before close)."""
    remove_orphans(tempfile.gettempdir(), PRIVATE_PREFIX)
    return tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
