"""Prediction routes: /v1/topics, /v1/misconceptions, /v1/products, and the MLflow / Azure ML scoring bodies."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request

from ..tasks.misconception import describe_label
from .guards import check_batch
from .models import ServedModel
from .schemas import (MisconceptionPrediction, MisconceptionsRequest, MisconceptionsResponse, ProductPrediction,
                      ProductsRequest, ProductsResponse, RankedLabel, TopicPrediction, TopicsRequest, TopicsResponse)


def build_router(app_state, auth) -> APIRouter:
    router = APIRouter(dependencies=[Depends(auth)])
    settings = app_state.settings

    def model_for(task: str) -> ServedModel:
        model = app_state.models.get(task)
        if model is None:
            served = ", ".join(app_state.models) or "none"
            raise HTTPException(status_code=404, detail=f"no {task} model is served here (served: {served}); start the "
                                                        f"server with --model pointing at one")
        return model

    async def predict(model: ServedModel, frame: pd.DataFrame, k: int):
        batcher = app_state.batchers.get(model.name)
        if batcher is not None:
            idx, prob, notes = await batcher.predict(frame, k)
        else:
            idx, prob, notes = await model.run(model.predict_frame, frame, k)
        labels = model.predictor.labels
        app_state.metrics.observe_predictions(model.name, [labels.values[i] for i in idx[:, 0]], prob[:, 0].tolist())
        return idx, prob, notes

    async def topics(questions: list[str]) -> TopicsResponse:
        model = model_for("topic")
        check_batch(questions, settings, "questions")
        column = model.predictor.manifest.get("text_column", "Question")
        labels = model.predictor.labels
        idx, prob, _ = await predict(model, pd.DataFrame({column: questions}), len(labels))
        predictions = [TopicPrediction(label=labels.values[row[0]], label_id=int(row[0]), topic=labels.names[row[0]],
                                       probability=float(p[0]),
                                       probabilities={labels.names[i]: round(float(q), 6) for i, q in zip(row, p)})
                       for row, p in zip(idx, prob)]
        return TopicsResponse(model=model.source, predictions=predictions)

    @router.post("/v1/topics", response_model=TopicsResponse, summary="Classify math questions by topic")
    async def topics_route(body: TopicsRequest) -> TopicsResponse:
        return await topics(body.questions)

    @router.post("/v1/misconceptions", response_model=MisconceptionsResponse,
                 summary="Rank Category:Misconception labels for student explanations")
    async def misconceptions(body: MisconceptionsRequest) -> MisconceptionsResponse:
        model = model_for("misconception")
        check_batch([i.student_explanation or "-" for i in body.items], settings, "items")
        s = model.predictor.manifest.get("task_settings", {})
        frame = pd.DataFrame([{s.get("question_column", "QuestionText"): i.question_text, s.get("answer_column", "MC_Answer"): i.mc_answer,
                               s.get("explanation_column", "StudentExplanation"): i.student_explanation,
                               s.get("question_id_column", "QuestionId"): i.question_id or ""} for i in body.items])
        labels = model.predictor.labels
        idx, prob, notes = await predict(model, frame, 3)
        predictions = [MisconceptionPrediction(top3=[RankedLabel(label=labels.values[i], score=round(float(q), 6),
                                                             description=describe_label(labels.values[i])) for i, q in zip(row, p)],
                                               submission=" ".join(labels.values[i] for i in row))
                       for row, p in zip(idx, prob)]
        return MisconceptionsResponse(model=model.source, predictions=predictions, notes=notes)

    @router.post("/v1/products", response_model=ProductsResponse, summary="Classify product records into categories")
    async def products(body: ProductsRequest) -> ProductsResponse:
        model = model_for("products")
        if len(body.records) > settings.max_batch:
            raise HTTPException(status_code=413, detail=f"records: {len(body.records)} items is over the limit of {settings.max_batch}")
        frame = pd.DataFrame([{k: "" if v is None else str(v) for k, v in r.items()} for r in body.records])
        labels = model.predictor.labels
        idx, prob, _ = await predict(model, frame, len(labels))
        predictions = [ProductPrediction(label=labels.values[row[0]], probability=float(p[0]),
                                         probabilities={labels.values[i]: round(float(q), 6) for i, q in zip(row, p)})
                       for row, p in zip(idx, prob)]
        return ProductsResponse(model=model.source, predictions=predictions)

    @router.post("/invocations", summary="MLflow scoring protocol and the Azure ML body {\"input_data\": [...]}")
    @router.post("/score", include_in_schema=False)
    async def invocations(request: Request, body: Annotated[Any, Body()], model: Annotated[str, Query()] = "topic"):
        served = model_for(model)
        frame = scoring_frame(body, served)
        if model == "topic":
            column = served.predictor.manifest.get("text_column", "Question")
            response = await topics(frame[column].astype(str).tolist())
            return {"predictions": [p.model_dump() for p in response.predictions]}
        check_batch(["x"] * len(frame), settings, "rows")
        labels = served.predictor.labels
        idx, prob, notes = await predict(served, frame, served.task.top_k)
        return {"predictions": [{"labels": [labels.values[i] for i in row], "scores": [float(q) for q in p]}
                                for row, p in zip(idx, prob)], "notes": notes}

    return router


def scoring_frame(body: Any, served: ServedModel) -> pd.DataFrame:
    """Rows from the bodies MLflow's scoring server and Azure ML accept."""
    column = served.predictor.manifest.get("text_column", "Question")
    if not isinstance(body, dict):
        raise HTTPException(status_code=422, detail="the body must be a JSON object such as {\"input_data\": [\"question\"]} "
                                                    "or {\"dataframe_records\": [...]}")
    if "input_data" in body:
        data = body["input_data"]
        if isinstance(data, dict) and "columns" in data:
            return pd.DataFrame(data.get("data", []), columns=data["columns"])
        return _rows(data, column)
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        return pd.DataFrame(split.get("data", []), columns=split.get("columns"))
    if "dataframe_records" in body:
        return pd.DataFrame(body["dataframe_records"])
    for key in ("inputs", "instances"):
        if key in body:
            return _rows(body[key], column)
    raise HTTPException(status_code=422, detail="unknown body: send input_data, dataframe_split, dataframe_records, inputs or instances")


def _rows(data: Any, column: str) -> pd.DataFrame:
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not data:
        raise HTTPException(status_code=422, detail="input_data must be a non-empty list of texts or records")
    if all(isinstance(x, str) for x in data):
        return pd.DataFrame({column: data})
    if all(isinstance(x, dict) for x in data):
        return pd.DataFrame(data)
    raise HTTPException(status_code=422, detail="input_data items must all be texts or all be records")
