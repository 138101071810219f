"""POST /v1/products: classify product records into categories (seed 004)."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas import ProductPrediction, ProductsRequest, ProductsResponse
from .common import Predictions, _records_frame


def build(served: Predictions, settings) -> APIRouter:
    router = APIRouter()
    model_for, predict = served.model_for, served.predict

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

    return router
