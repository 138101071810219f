"""POST /v1/<route> for a registered task without routes of its own: {"rows": [{column: value}, ...]} in,
the top-k labels and scores out."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..models import ServedModel
from .common import _records_frame


class GenericRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"rows": [{"Question": "Solve 2x = 4."}]}})
    rows: list[dict[str, str | int | float | bool | None]] = Field(..., min_length=1,
                                                                  description="Input rows with the task's columns.")


class GenericPrediction(BaseModel):
    labels: list[str] = Field(description="The top labels, best first.")
    scores: list[float]


class GenericResponse(BaseModel):
    model: str
    predictions: list[GenericPrediction]
    notes: list[str] = []


def add_generic_route(router: APIRouter, served: ServedModel, predict, settings) -> None:
    task = served.task

    async def generic(body: GenericRequest) -> GenericResponse:
        frame = _records_frame(body.rows, settings)
        labels = served.predictor.labels
        idx, prob, notes = await predict(served, frame, task.top_k)
        return GenericResponse(model=served.source, notes=notes, predictions=[
            GenericPrediction(labels=[labels.values[i] for i in row], scores=[round(float(q), 6) for q in p])
            for row, p in zip(idx, prob)])

    router.add_api_route(f"/v1/{task.route}", generic, methods=["POST"], response_model=GenericResponse,
                         summary=f"Top {task.top_k} labels of the {task.name} task")
