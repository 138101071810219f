"""POST /v1/misconceptions: rank Category:Misconception labels for a student's answer and explanation."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from ...tasks.misconception import describe_label
from ..guards import check_batch
from ..models import ServedModel
from ..schemas import MisconceptionPrediction, MisconceptionsRequest, MisconceptionsResponse, RankedLabel
from .common import Predictions


def _misconception_frame(model: ServedModel, items) -> pd.DataFrame:
    s = model.task.settings
    return pd.DataFrame([{s.question_column: i.question_text, s.answer_column: i.mc_answer,
                          s.explanation_column: i.student_explanation, s.question_id_column: i.question_id or ""}
                         for i in items])


def build(served: Predictions, settings) -> APIRouter:
    router = APIRouter()
    model_for, predict = served.model_for, served.predict

    @router.post("/v1/misconceptions", response_model=MisconceptionsResponse,
                 summary="Rank Category:Misconception labels for student explanations")
    async def misconceptions(body: MisconceptionsRequest) -> MisconceptionsResponse:
        model = model_for("misconception")
        check_batch([i.student_explanation or "-" for i in body.items], settings, "items")
        frame = _misconception_frame(model, body.items)
        labels = model.predictor.labels
        idx, prob, notes = await predict(model, frame, 3)
        predictions = [MisconceptionPrediction(top3=[RankedLabel(label=labels.values[i], score=round(float(q), 6),
                                                             description=describe_label(labels.values[i])) for i, q in zip(row, p)],
                                               submission=" ".join(labels.values[i] for i in row))
                       for row, p in zip(idx, prob)]
        return MisconceptionsResponse(model=model.source, predictions=predictions, notes=notes)

    return router
