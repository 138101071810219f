"""POST /invocations and /score: MLflow's scoring bodies and Azure ML's {"input_data": [...]}, for any served task."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body, HTTPException, Query, Request

from ..guards import check_batch
from ..models import ServedModel
from .common import Predictions
from .topic import classify_topics


def build(predictions: Predictions, settings) -> APIRouter:
    router = APIRouter()
    model_for, predict = predictions.model_for, predictions.predict

    @router.post("/invocations", summary="MLflow scoring protocol and the Azure ML body {\"input_data\": [...]}")
    @router.post("/score", include_in_schema=False)
    async def invocations(request: Request, body: Annotated[Any, Body()], model: Annotated[str, Query()] = "topic"):
        served = model_for(model)
        if not isinstance(served, ServedModel):  # the tutor generates: it has its own route
            raise HTTPException(status_code=422, detail=f"model {model!r} is the tutor, which /invocations does not "
                                                        "score; POST the question to /v1/tutor")
        frame = scoring_frame(body, served)
        if model == "topic":
            column = served.predictor.manifest.get("text_column", "Question")
            if column not in frame.columns:
                raise HTTPException(status_code=422, detail=f"the rows need a {column!r} column with the question text "
                                                            f"(got: {', '.join(map(str, frame.columns))[:200]})")
            response = await classify_topics(predictions, settings, frame[column].astype(str).tolist())
            return {"predictions": [p.model_dump() for p in response.predictions]}
        check_batch(["x"] * len(frame), settings, "rows")
        labels = served.predictor.labels
        idx, prob, notes = await predict(served, frame, served.task.top_k)
        return {"predictions": [{"labels": [labels.values[i] for i in row], "scores": [float(q) for q in p]}
                                for row, p in zip(idx, prob)], "notes": notes}

    return router


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
