"""The OpenAI-compatible door: POST /v1/chat/completions and GET /v1/models in OpenAI's shapes, so every OpenAI
client (the SDKs, Open WebUI, LibreChat, lm-evaluation-harness, inspect-ai) asks the verified tutor. It only maps:
the tutor service (serve/tutor_service.py) answers, behind the same keys, line, limits and metrics as /v1/tutor.

Model ids: ``tutor`` (the served tutor, its own solving settings) and ``tutor:PRESET`` for each named preset
(models/solving/presets.py), so a client that cannot send extra fields can still choose; the tutor's source name
(``bundled:qwen2.5-coder-1.5b``) is taken for ``tutor`` too. mathtune's solving settings may also come as extra
body fields (``mode``, ``samples``, ...). The reply's content is the steps and, last, one line with the final
answer; how it was checked is in ``mathtune``, beside the content, never after the final answer.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, create_model

from ...config import SolveConfig
from ...models.solving.presets import PRESETS
from ...models.solving.values import Finished, Piece, Progress, Solution
from ..shutdown import until_stopped
from ..tutor_service import Answering, TutorAsk, TutorService, finished_for
from .tutor import begin, counted, optional_fields, streamed_response, tutor_service

TUTOR_ID = "tutor"
MAX_MESSAGES = 100


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self, at: int) -> str:
        """The message's text (its text parts joined), or 400 naming a part this door cannot read."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        for j, part in enumerate(self.content):
            if part.type != "text":
                raise HTTPException(400, f"messages[{at}].content[{j}]: a {part.type!r} part; this tutor reads "
                                         "text only: send the problem as text")
        return "\n".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


_SOLVING = {name: field for name, field in optional_fields(SolveConfig).items() if name != "temperature"}
SolvingExtras = create_model("SolvingExtras", __config__=ConfigDict(extra="ignore", allow_inf_nan=False), **_SOLVING)


class ChatRequest(SolvingExtras):
    """OpenAI's chat request; unknown fields are ignored as OpenAI servers do."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: str = Field(..., description="tutor, or tutor:PRESET (GET /v1/models lists them).")
    messages: list[Message] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2, description="0 or absent: the tutor's deterministic "
                                      "answer; above 0: a sampled answer (a vote's samples at this temperature).")
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, description="Only 1: ask again with another seed for another answer.")


def model_ids(service: TutorService | None) -> list[str]:
    if service is None:
        return []
    return [TUTOR_ID, *(f"{TUTOR_ID}:{name}" for name in PRESETS)]


def _resolve(model_id: str, source: str) -> dict | None:
    """The solving settings a model id stands for (empty: the tutor's own), or None when it names no served tutor."""
    for name in (TUTOR_ID, source):
        if model_id == name:
            return {}
        if model_id.startswith(f"{name}:") and model_id[len(name) + 1:] in PRESETS:
            return PRESETS[model_id[len(name) + 1:]].settings.model_dump(mode="json")
    return None


def conversation(messages: list[Message]) -> tuple[str, list[tuple[str, str]]]:
    """The question (the last user turn) and the earlier (question, answer) turns. System and developer messages
    are left out: the tutor keeps its own instructions and scope rule, which a client's could undo."""
    turns: list[tuple[str, str]] = []
    pending: str | None = None
    for i, message in enumerate(messages):
        if message.role == "user":
            if pending is not None:
                turns.append((pending, ""))
            pending = message.text(i)
        elif message.role == "assistant" and pending is not None:
            turns.append((pending, message.text(i)))
            pending = None
    if pending is None:
        raise HTTPException(400, "messages: the last turn must be the user's question (no user message follows the "
                                 "last assistant message)")
    if not pending.strip():
        raise HTTPException(400, "messages: the user's question is empty; send the problem to solve")
    return pending, turns


def content_of(solution: Solution) -> str:
    """The steps and, last, one line with the final answer (what clients and harnesses read)."""
    if solution.refused or solution.final_answer is None:
        return solution.answer
    return f"{solution.answer.rstrip()}\n\nFinal answer: {solution.final_answer}"


def checked(finished: Finished, answering: Answering) -> dict:
    """How the answer was had: mathtune's own field, beside the content."""
    s = finished.solution
    return {"method": str(s.method), "final_answer": s.final_answer, "refused": s.refused, "unsure": s.unsure, "doubts": s.doubts,
            "confidence": s.confidence, "samples": s.samples, "agreeing": s.agreeing if s.voted_over else None,
            "votes": {str(k): v for k, v in s.votes.items()}, "program_ran": s.program_ok,
            "program_attempts": s.attempts, "out_of_time": s.out_of_time, "truncated": s.truncated,
            "reused": str(finished.reused), "seconds": round(finished.seconds, 3),
            "history_dropped": answering.dropped, "sources": [src.source for src in answering.sources]}


def _cut_at(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _finish_reason(solution: Solution, stopped: bool) -> str:
    return "length" if solution.truncated and not stopped else "stop"


def build_openai_router(app_state) -> APIRouter:
    router = APIRouter()

    def service_or_none() -> TutorService | None:
        return TutorService(app_state.models["tutor"], app_state.settings) if "tutor" in app_state.models else None

    def entry(model_id: str, created: int, service: TutorService) -> dict:
        settings = _resolve(model_id, service.model.source)
        solving = service.settings_for(settings or {})
        return {"id": model_id, "object": "model", "created": created, "owned_by": "mathtune",
                "mathtune": {"source": service.model.source, "solve": solving.model_dump(mode="json"),
                             "preset": model_id.partition(":")[2] or None,
                             "label": PRESETS[model_id.partition(":")[2]].label if ":" in model_id else None}}

    @router.get("/v1/models", summary="The models an OpenAI client can ask (OpenAI's list shape)")
    async def list_models() -> dict:
        service = service_or_none()
        created = int(getattr(app_state, "started", time.time()))
        return {"object": "list", "data": [entry(m, created, service) for m in model_ids(service)]
                if service is not None else []}

    @router.get("/v1/models/{model_id:path}", summary="One model an OpenAI client can ask")
    async def get_model(model_id: str) -> dict:
        service = service_or_none()
        if service is None or _resolve(model_id, service.model.source) is None:
            raise HTTPException(404, f"model {model_id!r} is not served here; GET /v1/models lists them")
        return entry(model_id, int(getattr(app_state, "started", time.time())), service)

    @router.post("/v1/chat/completions", summary="OpenAI's chat completions, answered by the verified tutor")
    async def chat(body: ChatRequest, request: Request,
                   service: TutorService = Depends(lambda: tutor_service(app_state))):
        preset = _resolve(body.model, service.model.source)
        if preset is None:
            raise HTTPException(404, f"model {body.model!r} is not served here; choose one of "
                                     f"{', '.join(model_ids(service)[:6])}, ... (GET /v1/models)")
        if body.n != 1:
            raise HTTPException(400, f"n {body.n}: this server gives one answer a request; ask again with another "
                                     "seed for another answer")
        question, turns = conversation(body.messages)
        extras = {name: getattr(body, name) for name in _SOLVING if getattr(body, name) is not None}
        overrides = {**preset, **extras}
        mode = overrides.get("mode") or str(service.model.generator.solving.mode)
        temperature = body.temperature or 0.0
        if temperature > 0 and mode == "vote":
            overrides["temperature"] = temperature
        ask = TutorAsk(question, turns, overrides, body.max_completion_tokens or body.max_tokens,
                       stream=body.stream and mode == "cot",  # other modes' checked answer replaces what was written
                       temperature=temperature if mode != "vote" else 0.0, seed=body.seed)
        answering = await begin(service, ask)
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        reply = Reply(body.model, stops[:4])
        if body.stream:
            return streamed_response(until_stopped(reply.chunks(app_state, answering, body.stream_options),
                                                   app_state.stopping), answering)
        finished = await finished_for(answering, request)
        counted(app_state, finished)
        return reply.whole(finished, answering)

    return router


class Reply:
    """One chat completion's id, model and stop sequences, as a whole response or as chunks."""

    def __init__(self, model: str, stops: list[str]):
        self.id, self.model, self.stops = f"chatcmpl-{uuid.uuid4().hex}", model, stops
        self.created = int(time.time())

    def _base(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    @staticmethod
    def usage(solution: Solution, answering: Answering) -> dict:
        # the question's words (with the history used): not every engine's tokenizer is in reach here (docs say so)
        prompt = len(answering.prompt.split())
        return {"prompt_tokens": prompt, "completion_tokens": solution.new_tokens,
                "total_tokens": prompt + solution.new_tokens}

    def whole(self, finished: Finished, answering: Answering) -> dict:
        content, stopped = _cut_at(content_of(finished.solution), self.stops)
        return {**self._base("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "logprobs": None, "finish_reason": _finish_reason(finished.solution, stopped)}],
                "usage": self.usage(finished.solution, answering), "mathtune": checked(finished, answering)}

    def _chunk(self, delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {**self._base("chat.completion.chunk"),
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    async def chunks(self, app_state, answering: Answering, options: StreamOptions | None):
        """A first delta with the role, content deltas (cot as it is written; other modes' checked answer at the
        end), a last chunk with finish_reason and mathtune's field, a usage chunk when asked, then [DONE]."""
        yield self._chunk({"role": "assistant", "content": ""})
        sent, stopped = "", False
        try:
            async for event in answering.events():
                if isinstance(event, Progress):  # a vote's progress has no place in OpenAI's chunks
                    continue
                if isinstance(event, Piece):
                    if stopped:
                        continue
                    text, stopped = _cut_at(sent + event.text, self.stops)
                    if len(text) > len(sent):
                        yield self._chunk({"content": text[len(sent):]})
                        sent = text
                    continue
                counted(app_state, event)
                solution = event.solution
                if sent:  # cot, streamed: the final answer's line follows what was written
                    tail = "" if solution.refused or solution.final_answer is None else \
                        f"\n\nFinal answer: {solution.final_answer}"
                    text, cut = _cut_at(sent + tail, self.stops) if not stopped else (sent, True)
                else:  # a checked answer (program, vote) or an empty stream: all of it now
                    text, cut = _cut_at(content_of(solution), self.stops)
                stopped = stopped or cut
                if len(text) > len(sent):
                    yield self._chunk({"content": text[len(sent):]})
                yield self._chunk({}, _finish_reason(event.solution, stopped), mathtune=checked(event, answering))
                if options is not None and options.include_usage:
                    yield f"data: {json.dumps({**self._base('chat.completion.chunk'), 'choices': [], 'usage': self.usage(event.solution, answering)})}\n\n"
        except Exception as err:  # noqa: BLE001 - the client reads an error in OpenAI's shape, not a cut stream
            import logging

            logging.getLogger(__name__).exception("chat completion failed")
            message = str(err) if err.__class__.__name__ == "EngineUnavailable" else \
                "answering failed; the server log has the details"
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'param': None, 'code': None}})}\n\n"
        yield "data: [DONE]\n\n"
