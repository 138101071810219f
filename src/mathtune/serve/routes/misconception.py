"""POST /v1/misconceptions: rank Category:Misconception labels for a student's answer and explanation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from fastapi import APIRouter

from ...tasks.misconception import describe_label
from ..guards import check_batch
from ..models import ServedModel
from ..schemas import (
    MisconceptionItem,
    MisconceptionPrediction,
    MisconceptionsRequest,
    MisconceptionsResponse,
    RankedLabel,
)
from .common import Predictions


def _misconception_frame(model: ServedModel, items) -> pd.DataFrame:
    s = model.task.settings
    return pd.DataFrame([{s.question_column: i.question_text, s.answer_column: i.mc_answer,
                          s.explanation_column: i.student_explanation, s.question_id_column: i.question_id or ""}
                         for i in items])


async def diagnose(served: Predictions, settings, items: list[MisconceptionItem], k: int = 3) -> tuple[MisconceptionsResponse, np.ndarray, np.ndarray]:
    """The route's answer (top 3), and the top-``k`` ids and probabilities behind it (the web UI asks for all)."""
    model = served.model_for("misconception")
    check_batch([i.student_explanation or "-" for i in items], settings, "items")
    frame = _misconception_frame(model, items)
    labels = model.predictor.labels
    idx, prob, notes = await served.predict(model, frame, max(k, 3))
    predictions = [MisconceptionPrediction(top3=[RankedLabel(label=labels.values[i], score=round(float(q), 6),
                                                         description=describe_label(labels.values[i]))
                                                 for i, q in zip(row[:3], p[:3])],
                                           submission=" ".join(labels.values[i] for i in row[:3]))
                   for row, p in zip(idx, prob)]
    return MisconceptionsResponse(model=model.source, predictions=predictions, notes=notes), idx, prob


def build(served: Predictions, settings) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/misconceptions", dependencies=[served.served("misconception")],
                 response_model=MisconceptionsResponse,
                 summary="Rank Category:Misconception labels for student explanations")
    async def misconceptions(body: MisconceptionsRequest) -> MisconceptionsResponse:
        return (await diagnose(served, settings, body.items))[0]

    return router
