"""Prediction routes: /v1/topics, /v1/misconceptions, /v1/products, and the MLflow / Azure ML scoring bodies."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..tasks.misconception import describe_label
from .guards import check_batch
from .models import ServedModel
from .schemas import (MisconceptionPrediction, MisconceptionsRequest, MisconceptionsResponse, ProductPrediction,
                      ProductsRequest, ProductsResponse, RankedLabel, TopicPrediction, TopicsRequest, TopicsResponse)


class Predictions:
    """The served models behind the routes: find the one for a task, predict through its micro-batcher."""

    def __init__(self, app_state) -> None:
        self.state = app_state

    def model_for(self, task: str) -> ServedModel:
        model = self.state.models.get(task)
        if model is None:
            served = ", ".join(self.state.models) or "none"
            raise HTTPException(status_code=404, detail=f"no {task} model is served here (served: {served}); start the "
                                                        f"server with --model pointing at one")
        return model

    async def predict(self, model: ServedModel, frame: pd.DataFrame, k: int):
        # each request is checked on its own before it may share a batch: a record missing a field gets its
        # own 422 instead of blank fields inside someone else's batch
        model.task.inputs(frame, model.predictor.manifest.get("text_column", "Question"), "request")
        batcher = self.state.batchers.get(model.name)
        if batcher is not None:
            idx, prob, notes = await batcher.predict(frame, k)
        else:
            idx, prob, notes = await model.run(model.predict_frame, frame, k)
        labels = model.predictor.labels
        self.state.metrics.observe_predictions(model.name, [labels.values[i] for i in idx[:, 0]], prob[:, 0].tolist())
        return idx, prob, notes


def _misconception_frame(model: ServedModel, items) -> pd.DataFrame:
    s = model.task.settings
    return pd.DataFrame([{s.question_column: i.question_text, s.answer_column: i.mc_answer,
                          s.explanation_column: i.student_explanation, s.question_id_column: i.question_id or ""}
                         for i in items])


def _records_frame(records: list[dict], settings) -> pd.DataFrame:
    if len(records) > settings.max_batch:
        raise HTTPException(status_code=413, detail=f"records: {len(records)} items is over the limit of {settings.max_batch}")
    for i, record in enumerate(records):
        if not all(isinstance(v, (str, int, float, bool, type(None))) for v in record.values()):
            raise HTTPException(status_code=422, detail=f"records[{i}]: field values must be texts or numbers")
    return pd.DataFrame([{k: "" if v is None else str(v) for k, v in r.items()} for r in records])


def build_router(app_state) -> APIRouter:
    router = APIRouter()
    settings = app_state.settings
    served_models = Predictions(app_state)
    model_for, predict = served_models.model_for, served_models.predict

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
        frame = _misconception_frame(model, body.items)
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
        frame = _records_frame(body.records, settings)
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
            if column not in frame.columns:
                raise HTTPException(status_code=422, detail=f"the rows need a {column!r} column with the question text "
                                                            f"(got: {', '.join(map(str, frame.columns))[:200]})")
            response = await topics(frame[column].astype(str).tolist())
            return {"predictions": [p.model_dump() for p in response.predictions]}
        check_batch(["x"] * len(frame), settings, "rows")
        labels = served.predictor.labels
        idx, prob, notes = await predict(served, frame, served.task.top_k)
        return {"predictions": [{"labels": [labels.values[i] for i in row], "scores": [float(q) for q in p]}
                                for row, p in zip(idx, prob)], "notes": notes}

    for name, served in app_state.models.items():
        if name not in DEDICATED and hasattr(served, "predictor"):
            add_generic_route(router, served, predict, settings)
    return router


# Tasks with routes of their own above (and the tutor, in serve/tutor.py); any other registered task a served
# model has gets the generic route: POST /v1/<task.route> with {"rows": [{column: value}, ...]}.
DEDICATED = frozenset({"topic", "misconception", "products", "tutor"})


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


def scoring_frame(body: Any, served: ServedModel) -> pd.DataFrame:
    """Rows from the bodies MLflow's scoring server and Azure ML accept; any other shape is a 422 that says what
    to send."""
    column = served.predictor.manifest.get("text_column", "Question")
    if not isinstance(body, dict):
        raise HTTPException(status_code=422, detail="the body must be a JSON object such as {\"input_data\": [\"question\"]} "
                                                    "or {\"dataframe_records\": [...]}")
    if "input_data" in body:
        data = body["input_data"]
        if isinstance(data, dict):
            return _split_frame(data, "input_data")
        return _rows(data, column, "input_data")
    if "dataframe_split" in body:
        return _split_frame(body["dataframe_split"], "dataframe_split")
    if "dataframe_records" in body:
        return _rows(body["dataframe_records"], column, "dataframe_records", texts=False)
    for key in ("inputs", "instances"):
        if key in body:
            return _rows(body[key], column, key)
    raise HTTPException(status_code=422, detail="unknown body: send input_data, dataframe_split, dataframe_records, inputs or instances")


_SCALAR = (str, int, float, bool, type(None))


def _split_frame(split: Any, key: str) -> pd.DataFrame:
    """``{"columns": [...], "data": [[...], ...]}``."""
    if not isinstance(split, dict):
        raise HTTPException(status_code=422, detail=f"{key} must be an object {{\"columns\": [names], \"data\": [[values], ...]}}")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise HTTPException(status_code=422, detail=f"{key}.columns must be a non-empty list of column names")
    if not isinstance(data, list) or not data:
        raise HTTPException(status_code=422, detail=f"{key}.data must be a non-empty list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise HTTPException(status_code=422, detail=f"{key}.data[{i}] must be a list of {len(columns)} values, one per column")
        if not all(isinstance(v, _SCALAR) for v in row):
            raise HTTPException(status_code=422, detail=f"{key}.data[{i}]: values must be texts or numbers")
    return pd.DataFrame(data, columns=columns)


def _rows(data: Any, column: str, key: str, texts: bool = True) -> pd.DataFrame:
    if isinstance(data, str) and texts:
        data = [data]
    if not isinstance(data, list) or not data:
        raise HTTPException(status_code=422, detail=f"{key} must be a non-empty list of {'texts or ' if texts else ''}records")
    if texts and all(isinstance(x, str) for x in data):
        return pd.DataFrame({column: data})
    if all(isinstance(x, dict) for x in data):
        for i, record in enumerate(data):
            if not record or not all(isinstance(v, _SCALAR) for v in record.values()):
                raise HTTPException(status_code=422, detail=f"{key}[{i}] must be a non-empty record of texts or numbers")
        return pd.DataFrame(data)
    raise HTTPException(status_code=422, detail=f"{key} items must all be {'texts or all be ' if texts else ''}records")
