"""The tutor's one owner of answering a question: the checks of a question and its history, the scope rule,
retrieval, the solving settings (a request's on top of the tutor's own, within the server's time cap), admission to
the tutor's line, answers shared between requests, solving and streaming. Every door asks it and only maps what it
yields: the API's /v1/tutor and /v1/chat/completions (JSON or server-sent events), the Tutor tab (a chat), and
`mathtune ask` (the terminal).

``TutorService.begin`` takes a ``TutorAsk`` and gives an ``Answering``: the checks are done, the sources known and
a place in the line held (so a full line, a bad question or a mode this host cannot run is said before any answer
begins); its ``events`` are ``Piece``s as a streamed answer is written and always one ``Finished`` at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import nullcontext
from dataclasses import dataclass, field

from starlette.concurrency import iterate_in_threadpool

from ..config import SolveConfig
from ..errors import MathtuneError
from ..models.solving.budget import max_stretch
from ..models.solving.checks import no_steps, not_whole
from ..models.solving.settings import overridden, require_runnable
from ..models.solving.solve import solve
from ..models.solving.streams import stream
from ..models.solving.values import STREAMED_MODES, Finished, Method, Piece, Progress, Reuse, Solution
from ..tasks.scope import REFUSAL, in_scope, with_history
from .shared import SharedAnswers, answer_key

# Tokens an answer may use when neither the request nor the tutor's recipe says (a trained tutor saves its own)
DEFAULT_MAX_NEW_TOKENS = 384


def within_time(solving: SolveConfig, limit: float | None) -> SolveConfig:
    """``solving`` with its vote's time budget cut to ``limit`` seconds of wall clock (a vote without one gets it;
    one that a slow engine could stretch past the limit becomes plain seconds, at most the limit); None: as it is."""
    if limit is None or (solving.time_budget is not None and solving.time_budget * max_stretch(solving) <= limit):
        return solving
    return solving.model_copy(update={"time_budget": min(solving.time_budget or limit, limit), "budget_speed": None})


class QuestionError(MathtuneError):
    """A question the tutor cannot take (empty, too long): the API answers 422, the Tutor tab shows the message."""


@dataclass
class TutorAsk:
    """One question to the tutor, as any door asks it."""

    question: str
    history: list[tuple[str, str]] = field(default_factory=list)  # earlier (question, answer) turns, oldest first
    overrides: dict = field(default_factory=dict)  # solving settings on top of the tutor's own (None: not given)
    max_new_tokens: int | None = None
    retrieval: bool = True
    k: int | None = None          # chunks to retrieve (default: the tutor's)
    stream: bool = False          # pieces as a streamed mode (cot, program, code) writes them
    temperature: float = 0.0      # a streamed answer sampled (Retry); 0: greedy
    seed: int | None = None       # a vote's first sample's seed, or a sampled stream's (another: a new answer)
    prompt: str | None = None     # the text the model is given instead of the question with its history (Continue)


@dataclass(frozen=True)
class Source:
    source: str
    text: str
    score: float


@dataclass
class Answering:
    """A question the service has taken: checked, its sources found, its place in the line held (unless its answer
    was kept, or it was refused). Read ``events`` once; ``release`` gives the place back (``events`` does it at its
    end; calling it again does nothing)."""

    service: TutorService
    ask: TutorAsk
    prompt: str
    context: object
    sources: list[Source]
    dropped: int             # earlier turns left out to fit the prompt budget (the oldest)
    solving: SolveConfig
    budget: int
    refusal: Solution | None = None
    started: float | None = None  # when the place in the line was taken; None: no place is held
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def streamed(self) -> bool:
        return self.ask.stream and str(self.solving.mode) in STREAMED_MODES

    def release(self) -> None:
        with self._lock:
            started, self.started = self.started, None
        if started is not None:
            self.service.gate.leave(started)

    async def events(self, stop: threading.Event | None = None) -> AsyncIterator[Piece | Progress | Finished]:
        """``Piece``s (a streamed answer's) or ``Progress`` (a vote asked for as a stream), then one ``Finished``. Setting ``stop`` (the asker is gone) ends
        generation at the next token once nobody else waits for the same answer; so does closing the iterator."""
        stop = stop or threading.Event()
        start = time.perf_counter()
        try:
            if self.refusal is not None:
                yield Finished(self.refusal)
            elif self.streamed:
                async for event in self.service.streamed(self, stop):
                    if isinstance(event, Finished):
                        checked(event.solution, self.ask.question)
                    yield event
            elif self.ask.stream:  # a vote asked for as a stream: how far it has got, as each answer comes in
                async for update in self._with_progress(stop):
                    yield update
            else:
                solution, reuse = await self.service.answer(self, stop)
                yield Finished(checked(solution, self.ask.question), Reuse(reuse), time.perf_counter() - start)
        finally:
            stop.set()
            self.release()

    async def _with_progress(self, stop: threading.Event) -> AsyncIterator[Progress | Finished]:
        start = time.perf_counter()
        loop, reports = asyncio.get_running_loop(), asyncio.Queue[Progress]()
        task = asyncio.ensure_future(self.service.answer(
            self, stop, lambda progress: loop.call_soon_threadsafe(reports.put_nowait, progress)))
        try:
            while not task.done():
                waiting = asyncio.ensure_future(reports.get())
                await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    yield waiting.result()
                else:
                    waiting.cancel()
            solution, reuse = task.result()
        finally:
            if not task.done():
                stop.set()
                task.cancel()
        yield Finished(checked(solution, self.ask.question), Reuse(reuse), time.perf_counter() - start)


def checked(solution: Solution, question: str) -> Solution:
    """``solution`` with the doubts a teacher's checks raise of it (models/solving/checks.py); the same each time,
    so a shared answer checked again for another request stays as it is."""
    if solution.refused:
        return solution
    doubts = [not_whole(question, solution.final_answer)]
    if solution.method == Method.COT and solution.voted_over is None:
        doubts.append(no_steps(solution.answer, solution.final_answer))
    solution.doubts = [d for d in doubts if d]
    return solution


def scope_refusal() -> Solution:
    return Solution(REFUSAL, None, Method.SCOPE, refused=True)


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

    def settings_for(self, overrides: dict) -> SolveConfig:
        """The tutor's own settings with ``overrides`` on top, within the server's time cap (MathtuneError names a
        bad value)."""
        return self.within_time(overridden(self.model.generator.solving, **overrides))

    def final_answer(self, text: str) -> str | None:
        return self.model.generator.tutor_prompt.final_answer(text)

    def budget(self, requested: int | None = None) -> int:
        """Tokens for one answer: the request's, else the tutor's own, never over the server's limit."""
        own = self.model.manifest.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        return min(requested or own, self.settings.tutor_max_new_tokens)

    def within_time(self, solving: SolveConfig) -> SolveConfig:
        """``solving`` with its vote's time budget cut to the server's limit (MATHTUNE_TUTOR_TIME_BUDGET), if any."""
        return within_time(solving, self.settings.tutor_time_budget)

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

    async def begin(self, ask: TutorAsk) -> Answering:
        """``ask`` taken: QuestionError (a bad question or turn), MathtuneError (a bad setting), ProgramsRefused (a
        mode this host cannot run) or TutorBusy (the line is full) before any answer begins."""
        question = self.question(ask.question)
        history = [(q, a) for q, a in ask.history]
        earlier = self.earlier([q for q, _ in history])
        budget = self.budget(ask.max_new_tokens)
        solving = self.settings_for(ask.overrides)
        if self.out_of_scope(question, earlier):
            return Answering(self, ask, question, None, [], 0, solving, budget, refusal=scope_refusal())
        require_runnable(solving)
        prompt, dropped = (ask.prompt, 0) if ask.prompt is not None else with_history(question, history)
        context, hits = await self.retrieve(prompt, ask.k, ask.retrieval)
        sources = [Source(h.source, h.text, round(h.score, 4)) for h in hits]
        answering = Answering(self, ask, prompt, context, sources, dropped, solving, budget)
        # a kept answer is given at once and takes no place; any other holds one, or the line says when to come back
        if not self.is_kept(answering):
            answering.started = self.gate.enter()
        return answering

    async def retrieve(self, question: str, k: int | None = None, retrieval: bool = True):
        return (await self.model.run(self.model.retrieve, question, k)) if retrieval else (None, [])

    def _answer_key(self, answering: Answering) -> str:
        return answer_key(answering.prompt, answering.context, answering.solving, answering.budget,
                          answering.ask.seed or 0)

    def _stream_key(self, answering: Answering) -> str | None:
        """The key a stream is shared under; None when it is not shared (sharing off, or sampled without a seed)."""
        ask = answering.ask
        if not self.shared.enabled or (ask.temperature > 0 and ask.seed is None):
            return None
        return "stream:" + answer_key(answering.prompt, answering.context,
                                      {"mode": str(answering.solving.mode), "temperature": ask.temperature},
                                      answering.budget, ask.seed or 0)

    def is_kept(self, answering: Answering) -> bool:
        """Whether this request's answer is kept (serve/shared.py): then it is given at once."""
        key = self._stream_key(answering) if answering.streamed else self._answer_key(answering)
        return key is not None and self.shared.kept(key)

    async def answer(self, answering: Answering, stop: threading.Event, progress=None) -> tuple[Solution, str]:
        """The solution as the settings say and how it was had: "none" (made for this request), "joined" (the same
        request was being answered: this one waited for it) or "cache" (kept from an earlier request). Setting
        ``stop`` ends generation at the next token once no other request waits for the same answer. A request whose
        answer was kept when it began holds no place; one made for it after all takes one."""
        key = self._answer_key(answering)
        a = answering

        async def make(halt: threading.Event) -> Solution:
            run = solve if progress is None else functools.partial(solve, progress=progress)
            return (await self.model.run(run, self.model.generator, [a.prompt], a.solving, [a.context], a.budget,
                                         halt, a.ask.seed or 0))[0]
        with self.gate.place() if a.started is None and a.refusal is None else nullcontext():
            return await self.shared.answer(key, make, stop)

    def _pieces(self, answering: Answering, cancel: threading.Event):
        ask = answering.ask
        return stream(self.model.generator, answering.prompt, str(answering.solving.mode), answering.budget,
                      answering.context, cancel, ask.temperature, ask.seed)

    async def streamed(self, answering: Answering, cancel: threading.Event) -> AsyncIterator[Piece | Finished]:
        """A streamed answer's events, shared with the requests that ask for the same stream when it is
        deterministic (greedy, or sampled with a seed); the last one says how it was had."""
        start = time.perf_counter()
        key = self._stream_key(answering)
        info: dict = {}
        if key is None:
            events, info["reused"] = iterate_in_threadpool(self._pieces(answering, cancel)), "none"
        else:
            unplaced = answering.started is None

            async def write(halt: threading.Event, _written: dict) -> AsyncIterator[Piece | Finished]:
                with self.gate.place() if unplaced else nullcontext():
                    async for event in iterate_in_threadpool(self._pieces(answering, halt)):
                        yield event
            events = self.shared.stream(key, write, info, cancel)
        finished = None
        try:
            async for event in events:
                if isinstance(event, Finished):
                    finished = event
                else:
                    yield event
        finally:
            cancel.set()
        if finished is not None:
            yield dataclasses.replace(finished, reused=Reuse(info.get("reused", "none")),
                                      seconds=time.perf_counter() - start)


async def until_disconnected(request, stop: threading.Event) -> None:
    """Set ``stop`` when an HTTP request's client goes away. (The request's own receive channel is listened on, as a
    streamed response does: Request.is_disconnected cannot see through Starlette's BaseHTTPMiddleware.)"""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # noqa: BLE001 - a channel that fails is a client that is gone
        pass
    stop.set()


async def finished_for(answering: Answering, request) -> Finished:
    """The ``Finished`` of a request answered whole: when its client goes away first, generation stops at the next
    token, so its sequences are free for the next teacher."""
    stop = threading.Event()
    listener = asyncio.ensure_future(until_disconnected(request, stop))
    try:
        finished = None
        async for event in answering.events(stop):
            if isinstance(event, Finished):
                finished = event
        assert finished is not None  # every answer ends with one
        return finished
    finally:
        listener.cancel()
