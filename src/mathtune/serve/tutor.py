"""POST /v1/tutor: a step-by-step answer with the retrieved sources; server-sent events when ``stream`` is true.

Events of a stream: ``sources`` (the retrieved chunks and ``history_dropped``, first), ``token`` (each piece of
text as it is made), ``done`` (the whole answer, its steps and final answer) or ``error``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from ..config import SolveConfig
from ..metrics.answers import is_refusal
from ..models.solve import STREAMED_MODES, VOTE_TIEBREAK, overridden
from ..sandbox import ProgramsRefused
from ..tasks.scope import REFUSAL, with_history
from .shutdown import until_stopped
from .tutor_service import QuestionError, TutorService

log = logging.getLogger(__name__)


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., max_length=20_000, description="An earlier question of this conversation.")
    answer: str = Field("", max_length=20_000, description="The tutor's answer to it (its final answer is enough).")


class TutorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"example": {
        "question": "A train travels 60 km in 45 minutes. What is its speed in km/h?", "stream": False}})
    question: str = Field(..., description="The problem, in words or LaTeX.")
    history: list[Turn] = Field(default_factory=list, max_length=50, description="The conversation so far, oldest "
                                "first: a follow-up (\"what if she buys 4 pens instead?\") is solved as the earlier "
                                "problem with only that changed. The newest turns that fit the prompt budget are used.")
    stream: bool = Field(False, description="Answer as server-sent events (sources, token..., done).")
    max_new_tokens: int | None = Field(None, gt=0, description="Generation budget (the server caps it).")
    retrieval: bool = Field(True, description="Put retrieved worked examples into the prompt, when the server has an index.")
    k: int | None = Field(None, gt=0, le=20, description="How many chunks to retrieve (default: the recipe's).")
    mode: Literal["cot", "program", "code", "vote"] | None = Field(
        None, description="cot: steps; program: a Python program run in a sandbox; code: the program alone, its "
                          "steps explained in comments (faster); vote: the majority answer of "
                          "several samples. Default: the tutor's own (its recipe's tutor.solve), else cot.")
    samples: int | None = Field(None, ge=2, le=9, description="mode vote: how many samples vote (at most; default 5).")
    vote_over: Literal["cot", "program", "code", "mixed"] | None = Field(
        None, description="mode vote: the mode of each sample; mixed: cot and program samples, one vote each "
                          "(default: the tutor's own).")
    tiebreak: Literal["program", "code", "cot", "none"] | None = Field(
        None, description=f"mode vote: when no two samples agree, one greedy answer in this mode decides "
                          f"(default {VOTE_TIEBREAK}).")
    then_over: Literal["cot", "program", "code", "mixed"] | None = Field(
        None, description="mode vote with agree_first: the mode of the samples drawn when the first round disagrees "
                          "(default: the tutor's own, else vote_over).")
    agree_first: int | None = Field(None, ge=0, le=9, description="mode vote: draw the greedy answer and "
                                    "agree_first - 1 samples first; when they all agree that is the answer and no "
                                    "more are drawn (0: all samples at once; default: the tutor's own).")
    first_round: int | None = Field(None, ge=0, le=9, description="mode vote with agree_first: answers in the first "
                                    "round; when agree_first of them agree (2 of 3, say) that is the answer (0: "
                                    "agree_first, they must all agree; default: the tutor's own).")
    time_budget: float | None = Field(None, gt=0, le=3600, description="mode vote: seconds the vote may take; then "
                                      "the samples still being drawn stop (in either round; the first round's "
                                      "greedy answer completes), as does a correction or tie-break under way, and "
                                      "the answer is voted from those finished (default: the tutor's own, else no "
                                      "limit).")

    def solving(self, model) -> SolveConfig:
        """The tutor's own solving settings with this request's on top."""
        return overridden(model.generator.solving, mode=self.mode, samples=self.samples, vote_over=self.vote_over,
                          tiebreak=self.tiebreak, agree_first=self.agree_first, then_over=self.then_over,
                          first_round=self.first_round, time_budget=self.time_budget)


class Source(BaseModel):
    source: str
    text: str
    score: float


class TutorResponse(BaseModel):
    model: str
    answer: str
    steps: list[str]
    final_answer: str | None
    refused: bool = Field(description="The tutor declined: the question is not about mathematics.")
    sources: list[Source]
    new_tokens: int
    seconds: float
    method: str = Field("cot", description="How the final answer was obtained: cot, program (also for mode code), "
                        "vote(cot|program|code|mixed), or "
                        "vote(cot)+program when no two samples agreed and a greedy program decided.")
    program: str | None = Field(None, description="mode program: the program that was run.")
    program_output: str | None = None
    program_ok: bool | None = Field(None, description="mode program: whether the program ran cleanly.")
    program_attempts: int = Field(1, description="mode program: programs written; 2 when a failed one was shown its "
                                                 "error and corrected.")
    confidence: float | None = Field(None, description="mode vote: the share of samples drawn that agree with the answer.")
    samples_drawn: int = Field(1, description="mode vote: samples drawn; fewer than `samples` when those drawn already "
                                              "decided the majority.")
    out_of_time: bool = Field(False, description="mode vote: the time budget ran out while the vote still drew "
                                                 "or corrected answers: those were cut off and the finished ones voted.")
    truncated: bool = Field(False, description="The answer reached the token budget and was cut; ask again with a larger max_new_tokens.")
    history_dropped: int = Field(0, description="Earlier turns of `history` left out to fit the prompt budget (the oldest).")
    reused: Literal["none", "cache", "joined"] = Field(
        "none", description="none: answered for this request; cache: the same request (question, history, context, "
                            "solving settings, budget) was answered before and this is that answer; joined: the same "
                            "request was being answered and this one waited for it. Answers are deterministic (greedy, "
                            "or a vote with fixed seeds), so a shared answer is the one this request would get.")


def solution_fields(solution) -> dict:
    """What a response says of a solution (models/solve.py Solution), answered whole or as the last event."""
    return {"answer": solution.answer, "steps": solution.steps, "final_answer": solution.final_answer,
            "refused": solution.refused, "method": solution.method, "program": solution.program,
            "program_output": solution.program_output, "program_ok": solution.program_ok,
            "program_attempts": solution.attempts, "confidence": solution.confidence,
            "samples_drawn": solution.samples, "out_of_time": solution.out_of_time}


def _once(fn, *args):
    """``fn(*args)`` the first time the result is called, nothing after (a stream's place is given back once)."""
    done = threading.Event()

    def call():
        if not done.is_set():
            done.set()
            fn(*args)
    return call


async def _released(events, release):
    try:
        async for event in events:
            yield event
    finally:
        release()


def split_steps(answer: str) -> list[str]:
    return [line.strip() for line in answer.splitlines() if line.strip()]


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def out_of_scope(source: str, stream: bool):
    """The server's short refusal of a question that is not math (as JSON, or as a two-event stream)."""
    refusal = TutorResponse(model=source, answer=REFUSAL, steps=[REFUSAL], final_answer=None, refused=True,
                            sources=[], new_tokens=0, seconds=0.0, method="scope")
    if stream:
        events = iter([_sse("sources", {"sources": []}), _sse("done", refusal.model_dump())])
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return refusal


def build_tutor_router(app_state) -> APIRouter:
    router = APIRouter()
    settings = app_state.settings

    def service() -> TutorService:
        model = app_state.models.get("tutor")
        if model is None:
            served = ", ".join(app_state.models) or "none"
            raise HTTPException(status_code=404, detail=f"no tutor model is served here (served: {served}); start the "
                                                        "server with --model pointing at a folder trained with a tutor recipe")
        return TutorService(model, settings)

    def count(refused: bool) -> None:
        app_state.metrics.predictions.labels(model="tutor", label="refused" if refused else "answered").inc()

    @router.post("/v1/tutor", response_model=TutorResponse, summary="Solve a math problem step by step (SSE when stream=true)")
    async def tutor(body: TutorRequest, request: Request, tutor: TutorService = Depends(service)):
        # the dependency runs before the body is checked: with no tutor served, any body is a 404
        try:
            question = tutor.question(body.question)
            earlier = tutor.earlier([t.question for t in body.history])
        except QuestionError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        budget = tutor.budget(body.max_new_tokens)
        if tutor.out_of_scope(question, earlier):
            app_state.metrics.predictions.labels(model="tutor", label="out_of_scope").inc()
            return out_of_scope(tutor.model.source, body.stream)
        question, dropped = with_history(question, [(t.question, t.answer) for t in body.history])
        context, hits = await tutor.retrieve(question, body.k, body.retrieval)
        sources = [Source(source=h.source, text=h.text, score=round(h.score, 4)) for h in hits]
        solving = body.solving(tutor.model)
        try:
            tutor.can_solve(solving)
        except ProgramsRefused as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        if body.stream:  # cot and program answers stream token by token; votes are finished before they are shown
            streamed = solving.mode in STREAMED_MODES
            # a kept stream or answer is given at once and takes no place; any other (one joining a stream another
            # request is writing too) holds a place in the line, or gets 503 with Retry-After when it is full
            shared = tutor.is_kept(question, context, budget, solving, mode=solving.mode if streamed else None)
            started = None if shared else tutor.gate.enter()
            release = _once(tutor.gate.leave, started) if started is not None else (lambda: None)
            first = _sse("sources", {"sources": [s.model_dump() for s in sources], "history_dropped": dropped})
            events = _stream(tutor, question, budget, context, first, count, solving.mode,
                             lambda reuse: app_state.metrics.tutor_answers.labels(reuse=reuse).inc(), place=shared) \
                if streamed else _stream_solution(tutor, question, budget, context, first, solving, place=shared)
            return StreamingResponse(until_stopped(_released(events, release), app_state.stopping),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                     background=BackgroundTask(release))
        start = time.perf_counter()
        solution, reuse = await tutor.solve_for(request, question, context, solving, budget)
        count(solution.refused)
        app_state.metrics.tutor_answers.labels(reuse=reuse).inc()
        return TutorResponse(model=tutor.model.source, sources=sources, new_tokens=solution.new_tokens,
                             seconds=round(time.perf_counter() - start, 3), **solution_fields(solution),
                             truncated=solution.samples == 1 and solution.attempts == 1 and solution.new_tokens >= budget,
                             history_dropped=dropped, reused=reuse)

    return router


async def _stream_solution(tutor: TutorService, question, budget, context, first: str, solving, place: bool = False):
    yield first
    start = time.perf_counter()
    stop = threading.Event()  # set when the client goes away (the stream is closed): the vote's samples stop
    try:  # the place in the line is the stream's (taken before the response began), unless its answer was kept
        solution, reuse = await tutor.answer(question, context, solving, budget, stop, place=place)
    except Exception:  # noqa: BLE001
        log.exception("tutor solving failed")
        yield _sse("error", {"error": "solving failed; the server log has the details"})
        return
    finally:
        stop.set()
    yield _sse("done", {"model": tutor.model.source, **solution_fields(solution), "reused": reuse,
                        "seconds": round(time.perf_counter() - start, 3)})


async def _stream(tutor: TutorService, question, budget, context, first: str, count, mode: str = "cot",
                  count_reuse=lambda reuse: None, place: bool = False):
    """Token events as the answer is written, then ``done``; for a program, ``done`` carries the checked answer
    (the program's explanation, code, its real output and the answer it printed), which replaces the tokens."""
    yield first
    pieces = []
    start = time.perf_counter()
    cancel = threading.Event()  # set when the client goes away: generation stops at the next token
    info: dict = {}
    try:
        async for piece in tutor.shared_pieces(question, context, budget, cancel, info, mode=mode, place=place):
            pieces.append(piece)
            yield _sse("token", {"text": piece})
    except Exception:  # noqa: BLE001 - the client gets a readable event instead of a cut stream
        log.exception("tutor generation failed")
        yield _sse("error", {"error": "generation failed; the server log has the details"})
        return
    count_reuse(info.get("reused", "none"))
    if info.get("solution") is not None:
        solution = info["solution"]
        count(solution.refused)
        yield _sse("done", {"model": tutor.model.source, **solution_fields(solution), "reused": info.get("reused"),
                            "truncated": bool(info.get("truncated")), "seconds": round(time.perf_counter() - start, 3)})
        return
    answer = "".join(pieces).strip()
    count(is_refusal(answer))
    yield _sse("done", {"model": tutor.model.source, "answer": answer, "steps": split_steps(answer), "method": "cot",
                        "final_answer": tutor.final_answer(answer), "refused": is_refusal(answer),
                        "reused": info.get("reused"),
                        "truncated": bool(info.get("truncated")), "seconds": round(time.perf_counter() - start, 3)})
