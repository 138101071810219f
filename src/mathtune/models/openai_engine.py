"""Any OpenAI-compatible server as the tutor's engine (vLLM, llama.cpp's llama-server, Ollama, a gateway): the
tutor's solving (programs in the sandbox, votes that stop early, the time budget, shared answers) runs here and
only the tokens come from there.

Named ``openai:BASE_URL`` with options in the query: ``openai:http://gpu:8000/v1?model=NAME&key_env=VAR&timeout=S``
(``model`` may be left out when the engine serves one model: read from its /v1/models; the API key is read from the
environment variable ``key_env``, MATHTUNE_ENGINE_API_KEY by default, never from the name; ``preset``: how the
tutor solves when a request does not say, a name of models/solving/presets.py, default cot).

Every call is one streamed chat completion (httpx). A vote's k samples go as one request with ``n`` where the
engine takes it (vLLM), else as k requests at once (llama.cpp refuses ``n`` > 1): the first refusal is remembered.
A caller that stops (a client gone, a decided vote) closes the connection, which ends the engine's generation.
An engine that cannot be reached or answers with an error raises EngineUnavailable (the API answers 503 with the
reason), never a hang: every request has a connect and a read timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..errors import ModelError
from ..tasks.tutor import DEFAULT_PROMPT, TutorPrompt
from .chat_engine import ChatEngineGenerator
from .generation import Generation, cut_at_stop
from .solving.presets import PRESETS

PREFIX = "openai:"
DEFAULT_KEY_ENV = "MATHTUNE_ENGINE_API_KEY"
CONNECT_SECONDS = 5.0


class EngineUnavailable(ModelError):
    """The remote engine cannot be reached, or failed a request (its reason kept): the API answers 503."""


@dataclass(frozen=True)
class EngineAddress:
    base_url: str          # ends with /v1 (or whatever prefix the engine serves /chat/completions under)
    model: str | None
    key_env: str
    timeout: float         # seconds without a byte from the engine before a request is given up
    preset: str | None = None  # how the tutor solves by default on this engine (models/solving/presets.py)

    @classmethod
    def parse(cls, name: str) -> EngineAddress:
        """``openai:URL[?model=&key_env=&timeout=]`` read, or ModelError saying what to write."""
        if not name.startswith(PREFIX):
            raise ModelError(f"{name}: an OpenAI-compatible engine is named openai:BASE_URL")
        parts = urlsplit(name[len(PREFIX):])
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelError(f"{name}: write openai:http://HOST:PORT/v1 (the engine's base URL, http or https)")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"model", "key_env", "timeout", "preset"}
        if unknown:
            raise ModelError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}; use model, key_env, timeout, "
                             "preset")
        try:
            timeout = float(options.get("timeout", 120))
        except ValueError:
            raise ModelError(f"{name}: timeout must be seconds, e.g. timeout=120") from None
        if not 0 < timeout <= 3600:
            raise ModelError(f"{name}: timeout {timeout:g}: choose more than 0 and at most 3600 seconds")
        base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        preset = options.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ModelError(f"{name}: preset {preset!r}: choose {', '.join(PRESETS)}")
        return cls(base, options.get("model"), options.get("key_env", DEFAULT_KEY_ENV), timeout, preset)

    @property
    def label(self) -> str:
        return f"{PREFIX}{self.base_url}" + (f" ({self.model})" if self.model else "")


class OpenAIEngineGenerator(ChatEngineGenerator):
    """The Generator protocol over an OpenAI-compatible server's /chat/completions."""

    backend = "openai"

    def __init__(self, address: EngineAddress, tutor_prompt: TutorPrompt = DEFAULT_PROMPT, workers: int = 16,
                 client=None):
        import httpx

        super().__init__(tutor_prompt, workers=workers)
        self.address = address
        key = os.environ.get(address.key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = client or httpx.Client(headers=headers, timeout=httpx.Timeout(address.timeout,
                                                                                      connect=CONNECT_SECONDS))
        self.takes_n: bool | None = None  # learnt from the first vote: whether the engine draws n answers at once
        self.model = address.model or self._only_model()
        self.path = address.label

    # -- the engine ------------------------------------------------------------------------------------------------
    def _get(self, path: str, timeout: float | None = None) -> dict:
        import httpx

        try:
            response = self._client.get(f"{self.address.base_url}{path}", timeout=timeout)
        except httpx.HTTPError as err:
            raise EngineUnavailable(f"the engine at {self.address.base_url} cannot be reached: {err}") from None
        if response.status_code != 200:
            raise EngineUnavailable(f"the engine at {self.address.base_url} answered {path} with "
                                    f"{response.status_code}: {response.text[:300]}")
        return response.json()

    def _only_model(self) -> str:
        """The model the engine serves, when it serves one (else the name must say which)."""
        served = [m.get("id") for m in self._get("/models").get("data", []) if m.get("id")]
        if len(served) != 1:
            raise ModelError(f"{self.address.base_url} serves {len(served)} models ({', '.join(served[:10])}); "
                             "name one: openai:URL?model=NAME")
        return served[0]

    def alive(self) -> tuple[bool, str]:
        """Whether the engine answers now (its /models within 2 s), and why not."""
        try:
            self._get("/models", timeout=2.0)
            return True, ""
        except EngineUnavailable as err:
            return False, str(err)

    def _body(self, chat: list[dict], max_new_tokens: int, temperature: float, seed: int | None,
              stops, ignore_eos: bool = False, n: int = 1) -> dict:
        body = {"model": self.model, "messages": chat, "max_tokens": max_new_tokens, "stream": True,
                "stop": [s for s in (*self.stops, *stops) if s][:4],  # OpenAI takes at most four
                "temperature": temperature if temperature > 0 else 0.0}
        if temperature > 0:
            body["top_p"] = 0.95
        if seed is not None:
            body["seed"] = seed
        if n == 1:
            body["stream_options"] = {"include_usage": True}  # the engine's own token count
        if n > 1:
            body["n"] = n
        if chat and chat[-1]["role"] == "assistant":  # the answer so far, continued (vLLM needs saying so)
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def _complete(self, body: dict, cancel: threading.Event | None = None, on_piece=None,
                  on_finish=None) -> list[Generation]:
        import httpx

        n = body.get("n", 1)
        texts, tokens, finish = [""] * n, [0] * n, [None] * n
        start = time.perf_counter()
        try:
            with self._client.stream("POST", f"{self.address.base_url}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    detail = response.read().decode(errors="replace")[:500]
                    if n > 1 and response.status_code in (400, 422):
                        raise _NoN(detail)
                    raise EngineUnavailable(f"the engine at {self.address.base_url} answered {response.status_code}: "
                                            f"{detail}")
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        break  # leaving the block closes the connection: the engine stops generating
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise EngineUnavailable(f"the engine failed: {str(chunk['error'])[:300]}")
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
                                on_finish(i, Generation(texts[i], tokens[i], time.perf_counter() - start,
                                                        finish[i] == "length"))
                    usage = chunk.get("usage")
                    if usage and n == 1 and usage.get("completion_tokens"):
                        tokens[0] = usage["completion_tokens"]
        except httpx.HTTPError as err:
            raise EngineUnavailable(f"the engine at {self.address.base_url} failed mid-answer: {err}") from None
        seconds = time.perf_counter() - start
        return [Generation(t, k, seconds, f == "length") for t, k, f in zip(texts, tokens, finish, strict=True)]

    def sample(self, question: str, k: int, max_new_tokens: int = 256, context=None, system: str | None = None,
               temperature: float = 0.7, seed: int | None = None, stops=(), cancel: threading.Event | None = None,
               on_finish=None, prefix: str | None = None) -> list[Generation]:
        """k answers of one prompt: one request with ``n`` where the engine takes it, else k requests at once
        (seeds seed, seed + 1, ...); ``on_finish`` and ``cancel`` as the protocol says."""
        if self.takes_n is not False:
            try:
                result = super().sample(question, k, max_new_tokens, context, system, temperature, seed, stops,
                                        cancel, on_finish, prefix)
                self.takes_n = True
                return result
            except _NoN:
                self.takes_n = False
        lock, finished = threading.Lock(), {}

        def one(i: int) -> None:
            body = self._body(self._chat(question, context, system, prefix), max_new_tokens, temperature,
                              None if seed is None else seed + i, stops)

            def done(_j: int, g: Generation) -> None:
                g = Generation(cut_at_stop(g.text, body["stop"]), g.new_tokens, g.seconds, g.truncated)
                with lock:
                    finished[i] = g
                if on_finish is not None:
                    on_finish(i, g)
            self._complete(body, cancel, on_finish=done)

        list(self._pool.map(one, range(k)))
        return [finished[i] for i in sorted(finished)]

    def close(self) -> None:
        super().close()
        self._client.close()


class _NoN(Exception):
    """The engine refused ``n`` > 1 (llama.cpp's server does): its samples go as separate requests."""


