"""POST /v1/topics: classify math questions by topic (every topic's probability)."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from ..guards import check_batch
from ..schemas import TopicPrediction, TopicsRequest, TopicsResponse
from .common import Predictions


async def classify_topics(served: Predictions, settings, questions: list[str]) -> TopicsResponse:
    """Also the /invocations answer for the topic task."""
    model = served.model_for("topic")
    check_batch(questions, settings, "questions")
    column = model.predictor.manifest.get("text_column", "Question")
    labels = model.predictor.labels
    idx, prob, _ = await served.predict(model, pd.DataFrame({column: questions}), len(labels))
    unfamiliar = model.drift.unfamiliar(questions) if model.drift is not None else [None] * len(questions)
    predictions = [TopicPrediction(label=labels.values[row[0]], label_id=int(row[0]), topic=labels.names[row[0]],
                                   probability=float(p[0]),
                                   probabilities={labels.names[i]: round(float(q), 6) for i, q in zip(row, p)},
                                   unfamiliar=why)
                   for row, p, why in zip(idx, prob, unfamiliar)]
    return TopicsResponse(model=model.source, predictions=predictions)



def build(served: Predictions, settings) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/topics", dependencies=[served.served("topic")],
                 response_model=TopicsResponse, summary="Classify math questions by topic")
    async def topics_route(body: TopicsRequest) -> TopicsResponse:
        return await classify_topics(served, settings, body.questions)

    return router
