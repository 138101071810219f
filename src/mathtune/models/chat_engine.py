"""What every engine spoken to in chat completions shares (llama.cpp in-process, any OpenAI-compatible server): the
Generator protocol (generation.py) over one call, ``_complete``, that streams a chat completion and reports each
piece and each finished answer. An engine says how it is reached (``_complete``), how it draws k answers of one
prompt (``n`` in one request, or k requests), and closes what it holds."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..config import SolveConfig
from ..tasks.tutor import DEFAULT_PROMPT, TutorPrompt, messages
from .generation import Generation, cut_at_stop


class ChatEngineGenerator:
    """The Generator protocol over chat completions; subclasses give ``_complete`` (and may change ``_body``)."""

    backend = "chat"
    parallel = True  # concurrent calls share the engine's decode batches

    def __init__(self, tutor_prompt: TutorPrompt = DEFAULT_PROMPT, system_prompt: str | None = None,
                 stops: Sequence[str] | None = None, workers: int = 8):
        self.tutor_prompt, self.solving = tutor_prompt, SolveConfig()
        self.system_prompt, self.stops = system_prompt or tutor_prompt.system, list(stops or tutor_prompt.stops)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"mathtune-{self.backend}")
        self._speed: float | None = None
        self._speed_lock = threading.Lock()

    def _complete(self, body: dict, cancel: threading.Event | None = None, on_piece=None,
                  on_finish=None) -> list[Generation]:
        """The ``n`` answers of one request (index order); ``on_piece(index, text)`` sees each piece as it comes,
        ``on_finish(index, generation)`` each answer as it ends. Setting ``cancel`` ends every sequence of the
        request at its next token (those answers come back unfinished)."""
        raise NotImplementedError

    def _body(self, chat: list[dict], max_new_tokens: int, temperature: float, seed: int | None,
              stops: Sequence[str], ignore_eos: bool = False, n: int = 1) -> dict:
        body = {"messages": chat, "max_tokens": max_new_tokens, "stream": True,
                "stop": [] if ignore_eos else [s for s in (*self.stops, *stops) if s]}
        if temperature > 0:
            body.update(temperature=temperature, top_p=0.95, top_k=0, seed=-1 if seed is None else seed)
        else:
            body.update(temperature=0.0, top_k=1)
        if ignore_eos:
            body["ignore_eos"] = True
        if n > 1:
            body["n"] = n
        return body

    def _chat(self, question, context, system, prefix: str | None = None) -> list[dict]:
        chat = messages(question, None, system or self.system_prompt, context, self.tutor_prompt)
        if prefix:  # the answer so far: the engine continues the last assistant message (tool-integrated reasoning)
            chat.append({"role": "assistant", "content": prefix})
        return chat

    def generate(self, questions, max_new_tokens=256, contexts=None, ignore_eos=False, system=None,
                 temperature: float = 0.0, seed: int | None = None, stops: Sequence[str] = (),
                 prefix: str | None = None, cancel: threading.Event | None = None) -> list[Generation]:
        """Answers to ``questions``, decoded together (one request each, in parallel slots); ``prefix`` begins each
        (only what follows it is returned); ``cancel`` stops them all at the next token."""
        contexts = list(contexts) if contexts is not None else [None] * len(questions)

        def one(i: int) -> Generation:
            body = self._body(self._chat(questions[i], contexts[i], system, prefix), max_new_tokens, temperature,
                              None if seed is None else seed + i, stops, ignore_eos)
            [result] = self._complete(body, cancel)
            return Generation(cut_at_stop(result.text, body["stop"]), result.new_tokens, result.seconds,
                              result.truncated)

        if len(questions) == 1:
            return [one(0)]
        return list(self._pool.map(one, range(len(questions))))

    def sample(self, question: str, k: int, max_new_tokens: int = 256, context=None, system: str | None = None,
               temperature: float = 0.7, seed: int | None = None, stops: Sequence[str] = (),
               cancel: threading.Event | None = None, on_finish=None, prefix: str | None = None) -> list[Generation]:
        """k sampled answers of one prompt as one batch: the prompt is evaluated once, the k sequences share its
        KV cache and decode together. ``on_finish(index, generation)`` sees each answer as it ends; once
        ``cancel`` is set the others stop at their next token and only the finished answers are returned.
        ``prefix`` begins each answer (only what follows it is returned)."""
        body = self._body(self._chat(question, context, system, prefix), max_new_tokens, temperature, seed, stops,
                          n=k)
        finished: dict[int, Generation] = {}

        def done(i: int, g: Generation) -> None:
            finished[i] = Generation(cut_at_stop(g.text, body["stop"]), g.new_tokens, g.seconds, g.truncated)
            if on_finish is not None:
                on_finish(i, finished[i])

        self._complete(body, cancel, on_finish=done)
        return [finished[i] for i in sorted(finished)]

    def continue_answer(self, question: str, prefix: str, max_new_tokens: int = 256, context=None,
                        system: str | None = None, stops: Sequence[str] = (), temperature: float = 0.0,
                        seed: int | None = None) -> Generation:
        """The rest of an answer that begins with ``prefix`` (returned without it)."""
        body = self._body(self._chat(question, context, system, prefix), max_new_tokens, temperature, seed, stops)
        [rest] = self._complete(body)  # streamed: only what the engine added to the prefix
        return Generation(cut_at_stop(rest.text, body["stop"]), rest.new_tokens, rest.seconds, rest.truncated)

    def stream(self, question, max_new_tokens=256, context=None, cancel=None, temperature=0.0, seed=None,
               info=None, prefix: str | None = None, stops: Sequence[str] = (), system: str | None = None) -> Iterator[str]:
        """Pieces as the engine makes them. Closing the iterator or setting ``cancel`` ends the request at the next
        token and frees its slot."""
        cancel = cancel or threading.Event()
        pieces: queue.Queue = queue.Queue()
        done = object()

        def run():
            try:
                body = self._body(self._chat(question, context, system, prefix), max_new_tokens, temperature, seed, stops)
                [result] = self._complete(body, cancel, lambda _i, text: pieces.put(text))
                if info is not None:
                    info.update(new_tokens=result.new_tokens, truncated=result.truncated)
                pieces.put(done)
            except Exception as err:  # noqa: BLE001 - raised again in the reading thread
                pieces.put(err)

        worker = threading.Thread(target=run, daemon=True, name=f"mathtune-{self.backend}-stream")
        worker.start()
        try:
            while (item := pieces.get()) is not done:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancel.set()

    def speed(self, remeasure: bool = False) -> float:
        """The engine's decode speed, tokens/s of one answer decoding alone, measured once (a fixed greedy answer of
        SPEED_TOKENS tokens, timed from its first piece to its last, so the prompt does not count): what a time
        budget set on one host is scaled by on another (solving/budget.py)."""
        with self._speed_lock:
            if self._speed is None or remeasure:
                self._speed = measured_speed(self._complete, self._body)
            return self._speed

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


SPEED_TOKENS = 48
SPEED_PROMPT = [{"role": "user", "content": "Count from 1 to 100, one number a line."}]


def measured_speed(complete, body) -> float:
    """Tokens/s between the first and the last piece of one greedy answer of SPEED_TOKENS tokens."""
    times: list[float] = []
    complete(body(SPEED_PROMPT, SPEED_TOKENS, 0.0, None, (), ignore_eos=True),
             on_piece=lambda _i, _text: times.append(time.perf_counter()))
    if len(times) < 3 or times[-1] <= times[0]:
        raise RuntimeError(f"the engine's speed could not be measured: {len(times)} pieces came back")
    return (len(times) - 1) / (times[-1] - times[0])
