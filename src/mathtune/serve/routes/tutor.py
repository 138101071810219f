"""POST /v1/tutor: a step-by-step answer with the retrieved sources; server-sent events when ``stream`` is true.

Events of a stream: ``sources`` (the retrieved chunks and ``history_dropped``, first), ``token`` (each piece of
text as it is made; cot, program, code), ``progress`` (a vote: answers in so far and what they say), ``done`` (the whole answer, its steps and final answer) or ``error``. The answering is the
tutor service's (serve/tutor_service.py); this module only maps its events to JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.background import BackgroundTask

from ...config import SolveConfig
from ...models.solving.values import Finished, Method, Piece, Progress, Solution
from ...sandbox import ProgramsRefused
from ..shutdown import until_stopped
from ..tutor_service import Answering, QuestionError, TutorAsk, TutorService, finished_for

log = logging.getLogger(__name__)


def optional_fields(model: type[BaseModel]) -> dict:
    """``model``'s fields, each optional (None: the tutor's own), with the same type, range and description: a
    request's solving settings are SolveConfig's, declared once."""
    fields = {}
    for name, info in model.model_fields.items():
        copied = info._copy() if hasattr(info, "_copy") else info.__class__.merge_field_infos(info)
        copied.default, copied.default_factory = None, None
        copied.description = f"{info.description} Default: the tutor's own."
        annotation: Any = info.annotation
        fields[name] = (annotation | None, copied)
    return fields


SolvingFields = create_model("SolvingFields", __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
                             **optional_fields(SolveConfig))


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., max_length=20_000, description="An earlier question of this conversation.")
    answer: str = Field("", max_length=20_000, description="The tutor's answer to it (its final answer is enough).")


class TutorRequest(SolvingFields):
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

    def overrides(self) -> dict:
        return {name: getattr(self, name) for name in SolveConfig.model_fields}

    def ask(self) -> TutorAsk:
        return TutorAsk(self.question, [(t.question, t.answer) for t in self.history], self.overrides(),
                        self.max_new_tokens, self.retrieval, self.k, self.stream)


class SourceOut(BaseModel):
    source: str
    text: str
    score: float


class TutorResponse(BaseModel):
    model: str
    answer: str
    steps: list[str]
    final_answer: str | None
    refused: bool = Field(description="The tutor declined: the question is not about mathematics.")
    sources: list[SourceOut]
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
    votes: dict[str, int] = Field(default_factory=dict, description="mode vote: each answer found and how many samples "
                                                                    "gave it.")
    out_of_time: bool = Field(False, description="mode vote: the time budget ran out while the vote still drew "
                                                 "or corrected answers: those were cut off and the finished ones voted.")
    unsure: bool = Field(False, description="The answer is not settled: a check failed (`doubts`), a vote whose samples "
                                            "mostly disagree or that the time budget cut, or a program that did not "
                                            "run cleanly.")
    doubts: list[str] = Field(default_factory=list, description="Why a teacher should not take the answer as it is: "
                              "a whole number asked (of days, buses, people) and a fraction given, or no steps shown.")
    truncated: bool = Field(False, description="The answer reached the token budget and was cut; ask again with a larger max_new_tokens.")
    history_dropped: int = Field(0, description="Earlier turns of `history` left out to fit the prompt budget (the oldest).")
    reused: Literal["none", "cache", "joined"] = Field(
        "none", description="none: answered for this request; cache: the same request (question, history, context, "
                            "solving settings, budget) was answered before and this is that answer; joined: the same "
                            "request was being answered and this one waited for it. Answers are deterministic (greedy, "
                            "or a vote with fixed seeds), so a shared answer is the one this request would get.")


def solution_fields(solution: Solution) -> dict:
    """What a response says of a solution, answered whole or as the last event."""
    return {"answer": solution.answer, "steps": solution.steps, "final_answer": solution.final_answer,
            "refused": solution.refused, "method": str(solution.method), "program": solution.program,
            "program_output": solution.program_output, "program_ok": solution.program_ok,
            "program_attempts": solution.attempts, "confidence": solution.confidence,
            "samples_drawn": solution.samples, "votes": {str(k): v for k, v in solution.votes.items()},
            "out_of_time": solution.out_of_time, "unsure": solution.unsure, "doubts": solution.doubts,
            "truncated": solution.truncated,
            "new_tokens": solution.new_tokens}


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def begin(tutor: TutorService, ask: TutorAsk) -> Answering:
    """The service's ``begin``, its refusals as HTTP errors: 422 for a question, a setting or a mode this host cannot
    run; TutorBusy is already a 503 with Retry-After."""
    try:
        return await tutor.begin(ask)
    except (QuestionError, ProgramsRefused) as err:
        raise HTTPException(status_code=422, detail=str(err)) from None


def streamed_response(body, answering: Answering) -> StreamingResponse:
    """Server-sent events from ``body``; when the response ends, however it ends, ``body`` is closed (a client that
    went away leaves it suspended, and only closing it ends the generation behind it at once, not whenever the
    garbage collector gets to it) and the answer's place in the line is given back."""
    async def finish() -> None:
        try:
            await body.aclose()
        finally:
            answering.release()
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                             background=BackgroundTask(finish))


def tutor_service(app_state) -> TutorService:
    """The served tutor's service, or 404 saying what is served."""
    model = app_state.models.get("tutor")
    if model is None:
        served = ", ".join(app_state.models) or "none"
        raise HTTPException(status_code=404, detail=f"no tutor model is served here (served: {served}); start the "
                                                    "server with --model pointing at a folder trained with a tutor "
                                                    "recipe, or --tutor")
    return TutorService(model, app_state.settings)


def counted(app_state, finished: Finished) -> None:
    """The tutor's metrics for one answer: refused by the scope rule, refused by the model, or answered."""
    solution = finished.solution
    label = "out_of_scope" if solution.method == Method.SCOPE else "refused" if solution.refused else "answered"
    app_state.metrics.predictions.labels(model="tutor", label=label).inc()
    if solution.method != Method.SCOPE:
        app_state.metrics.tutor_answers.labels(reuse=str(finished.reused)).inc()


def build_tutor_router(app_state) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/tutor", response_model=TutorResponse,
                 summary="Solve a math problem step by step (SSE when stream=true)")
    async def tutor(body: TutorRequest, request: Request,
                    service: TutorService = Depends(lambda: tutor_service(app_state))):
        # the dependency runs before the body is checked: with no tutor served, any body is a 404
        answering = await begin(service, body.ask())
        model = service.model.source
        if body.stream:
            first = _sse("sources", {"sources": [s.__dict__ for s in answering.sources],
                                     "history_dropped": answering.dropped})
            return streamed_response(until_stopped(_events(app_state, answering, model, first), app_state.stopping),
                                     answering)
        finished = await finished_for(answering, request)
        counted(app_state, finished)
        return TutorResponse(model=model, sources=[SourceOut(**s.__dict__) for s in answering.sources],
                             seconds=round(finished.seconds, 3), **solution_fields(finished.solution),
                             history_dropped=answering.dropped, reused=str(finished.reused))

    return router


async def _events(app_state, answering: Answering, model: str, first: str):
    """``sources``, a ``token`` per piece, then ``done`` (for a program, the checked answer that replaces the
    tokens) or ``error``."""
    yield first
    try:
        async for event in answering.events():
            if isinstance(event, Piece):
                yield _sse("token", {"text": event.text})
            elif isinstance(event, Progress):  # a vote under way: answers in so far, and what they say
                yield _sse("progress", {"drawn": event.drawn, "k": event.k,
                                        "answers": [{"answer": a, "count": n} for a, n in event.answers]})
            else:
                counted(app_state, event)
                yield _sse("done", {"model": model, **solution_fields(event.solution), "reused": str(event.reused),
                                    "seconds": round(event.seconds, 3)})
    except Exception:  # noqa: BLE001 - the client gets a readable event instead of a cut stream
        log.exception("tutor answering failed")
        yield _sse("error", {"error": "answering failed; the server log has the details"})
