"""One tutor service for the API (/v1/tutor) and the Tutor tab: the token budget, the checks of a question, the
scope rule, retrieval, solving and streaming, behind the tutor's admission line, so the two cannot disagree."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import nullcontext

from starlette.concurrency import iterate_in_threadpool

from ..config import SolveConfig
from ..errors import MathtuneError
from ..models.solve import (
    PROGRAM_MODES,
    STREAMED_MODES,
    Solution,
    require_runnable,
    solve_as,
    stream_cot,
    stream_program,
)
from ..tasks.scope import in_scope
from .shared import SharedAnswers, answer_key

# Tokens an answer may use when neither the request nor the tutor's recipe says (a trained tutor saves its own)
DEFAULT_MAX_NEW_TOKENS = 384


def within_time(solving: SolveConfig, limit: float | None) -> SolveConfig:
    """``solving`` with its vote's time budget cut to ``limit`` seconds (a vote without one gets it); None: as it is."""
    if limit is None or (solving.time_budget is not None and solving.time_budget <= limit):
        return solving
    return solving.model_copy(update={"time_budget": limit})


class QuestionError(MathtuneError):
    """A question the tutor cannot take (empty, too long): the API answers 422, the Tutor tab shows the message."""


class TutorService:
    def __init__(self, model, settings):
        self.model, self.settings = model, settings
        # a served tutor's (serve/models.py engine_for); a model without one shares nothing
        shared = getattr(model, "shared", None)
        self.shared = shared if shared is not None else SharedAnswers(0, join=False)

    @property
    def gate(self):
        return self.model.gate

    @property
    def solving(self) -> SolveConfig:
        """The tutor's own solving settings, its vote's time budget within the server's cap."""
        return self.within_time(self.model.generator.solving)

    def final_answer(self, text: str) -> str | None:
        return self.model.generator.tutor_prompt.final_answer(text)

    def budget(self, requested: int | None = None) -> int:
        """Tokens for one answer: the request's, else the tutor's own, never over the server's limit."""
        own = self.model.manifest.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        return min(requested or own, self.settings.tutor_max_new_tokens)

    def within_time(self, solving: SolveConfig) -> SolveConfig:
        """``solving`` with its vote's time budget cut to the server's limit (MATHTUNE_TUTOR_TIME_BUDGET), if any."""
        return within_time(solving, self.settings.tutor_time_budget)

    def can_solve(self, solving: SolveConfig) -> None:
        """ProgramsRefused when ``solving`` needs programs and this host runs none (the sandbox's boundary)."""
        require_runnable(solving.mode, solving.vote_over, solving.then_over)

    def question(self, text: str | None) -> str:
        """The question as the tutor takes it (trimmed), or QuestionError saying what to change."""
        question = (text or "").strip()
        if not question:
            raise QuestionError("question is empty; send the problem to solve")
        if len(question) > self.settings.max_text_chars:
            raise QuestionError(f"question has {len(question)} characters, over the limit of "
                                f"{self.settings.max_text_chars}; shorten it")
        return question

    def earlier(self, questions: list[str]) -> list[str]:
        """A conversation's earlier questions, each checked like a question (QuestionError names the turn): they
        reach the model too."""
        checked = []
        for i, text in enumerate(questions):
            try:
                checked.append(self.question(text))
            except QuestionError as err:
                raise QuestionError(f"history[{i}]: {err}") from None
        return checked

    def out_of_scope(self, question: str, earlier: list[str] | None = None) -> bool:
        """The server's rule, not the model's whim: not math (nor a follow-up in a math conversation). Every
        earlier question of the conversation is held to it too, each against the turns before it, so a request
        cannot carry a non-math question to the model in its history."""
        if not self.settings.tutor_scope:
            return False
        asked = [*(earlier or []), question]
        return any(not in_scope(text, asked[:i]) for i, text in enumerate(asked))

    async def retrieve(self, question: str, k: int | None = None, retrieval: bool = True):
        return (await self.model.run(self.model.retrieve, question, k)) if retrieval else (None, [])

    async def answer(self, question: str, context, solving: SolveConfig, budget: int,
                     stop: threading.Event | None = None, place: bool = True, seed: int = 0) -> tuple[Solution, str]:
        """One solution as ``solving`` says and how it was had: "none" (made for this request), "joined" (the same
        request was being answered: this one waited for it) or "cache" (kept from an earlier request; see
        serve/shared.py). Unless its answer is kept, the request holds a place in the tutor's line while it waits
        (``place`` false: the caller holds one). Setting ``stop`` (the asker is gone) ends generation at the next
        token (a vote's samples, a single answer, a correction) once no other request waits for the same answer.
        ``seed``: a vote's first sample's (another seed draws other samples: a new answer, not the shared one)."""
        solving = self.within_time(solving)
        key = answer_key(question, context, solving, budget, seed)

        async def make(halt: threading.Event) -> Solution:
            return (await self.model.run(solve_as, self.model.generator, [question], solving, [context], budget,
                                         halt, seed))[0]
        with self.gate.place() if place and not self.shared.kept(key) else nullcontext():
            return await self.shared.answer(key, make, stop)

    async def solve(self, question: str, context, solving: SolveConfig, budget: int,
                    stop: threading.Event | None = None) -> Solution:
        """``answer``'s solution alone."""
        return (await self.answer(question, context, solving, budget, stop))[0]

    async def solve_for(self, request, question: str, context, solving: SolveConfig, budget: int) -> tuple[Solution, str]:
        """``answer`` for an HTTP request: when its client goes away before the answer, generation (a vote's samples,
        or a single answer) stops at the next token, so its sequences are free for the next teacher. (The request's
        own receive channel is listened on, as a streamed response does: Request.is_disconnected cannot see through
        Starlette's BaseHTTPMiddleware.)"""
        import asyncio

        async def client_gone() -> None:
            try:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # noqa: BLE001 - a channel that fails is a client that is gone
                return

        stop = threading.Event()
        task = asyncio.ensure_future(self.answer(question, context, solving, budget, stop))
        listener = asyncio.ensure_future(client_gone())
        try:
            done, _ = await asyncio.wait({task, listener}, return_when=asyncio.FIRST_COMPLETED)
            if listener in done and not task.done():
                stop.set()
            return await task
        finally:
            listener.cancel()
            stop.set()

    async def pieces(self, question: str, context, budget: int, cancel: threading.Event, info: dict,
                     temperature: float = 0.0, seed: int | None = None, mode: str = "cot") -> AsyncIterator[str]:
        """An answer piece by piece: cot (programs it writes mid-answer run) or program (the explanation and program
        as written; then ``info["solution"]`` holds the checked answer that replaces them). ``cancel`` is set when
        the caller stops reading (a closed page, Stop, a client gone), and generation ends at the next token."""
        if mode not in STREAMED_MODES:
            raise ValueError(f"mode {mode!r} does not stream: only cot, program and code answers do")
        if mode in PROGRAM_MODES:
            stream = stream_program(self.model.generator, question, budget, context, cancel, temperature, seed, info,
                                    mode=mode)
        else:
            stream = stream_cot(self.model.generator, question, budget, context, cancel, temperature, seed, info)
        try:
            async for piece in iterate_in_threadpool(stream):
                yield piece
        finally:
            cancel.set()

    def _stream_key(self, question: str, context, budget: int, temperature: float, seed: int | None,
                    mode: str) -> str | None:
        """The key a stream is shared under; None when it is not shared (sharing off, or sampled without a seed)."""
        if not self.shared.enabled or (temperature > 0 and seed is None):
            return None
        return "stream:" + answer_key(question, context, {"mode": mode, "temperature": temperature}, budget, seed or 0)

    def is_kept(self, question: str, context, budget: int, solving: SolveConfig | None = None,
                temperature: float = 0.0, seed: int | None = None, mode: str | None = None) -> bool:
        """Whether this request's answer is kept (serve/shared.py): then it is given at once and takes no place in
        the tutor's line. A stream's ``mode`` (cot, program, code), else ``solving``'s answer."""
        if mode is not None:
            key = self._stream_key(question, context, budget, temperature, seed, mode)
        else:
            key = answer_key(question, context, self.within_time(solving), budget, seed or 0)
        return key is not None and self.shared.kept(key)

    async def shared_pieces(self, question: str, context, budget: int, cancel: threading.Event, info: dict,
                            temperature: float = 0.0, seed: int | None = None, mode: str = "cot",
                            place: bool = False) -> AsyncIterator[str]:
        """``pieces``, shared with the requests that ask for the same stream (serve/shared.py) when it is
        deterministic (greedy, or sampled with a seed); ``info["reused"]`` says how it was had. ``place``: the
        caller holds no place in the tutor's line (its stream was kept when it asked), so a stream written for it
        after all takes one."""
        key = self._stream_key(question, context, budget, temperature, seed, mode)
        if key is None:
            info["reused"] = "none"
            async for piece in self.pieces(question, context, budget, cancel, info, temperature, seed, mode):
                yield piece
            return

        async def write(halt: threading.Event, written: dict) -> AsyncIterator[str]:
            with self.gate.place() if place else nullcontext():
                async for piece in self.pieces(question, context, budget, halt, written, temperature, seed, mode):
                    yield piece
        async for piece in self.shared.stream(key, write, info, cancel):
            yield piece
