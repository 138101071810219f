"""POST /v1/products: classify product records into categories (seed 004)."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas import ProductPrediction, ProductsRequest, ProductsResponse
from .common import Predictions, _records_frame


async def classify_products(served: Predictions, settings, records: list[dict]) -> ProductsResponse:
    """The /v1/products answer (also the web UI's Products tab)."""
    model = served.model_for("products")
    frame = _records_frame(records, settings)
    labels = model.predictor.labels
    idx, prob, _ = await served.predict(model, frame, len(labels))
    predictions = [ProductPrediction(label=labels.values[row[0]], probability=float(p[0]),
                                     probabilities={labels.values[i]: round(float(q), 6) for i, q in zip(row, p)})
                   for row, p in zip(idx, prob)]
    return ProductsResponse(model=model.source, predictions=predictions)


def build(served: Predictions, settings) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/products", dependencies=[served.served("products")],
                 response_model=ProductsResponse, summary="Classify product records into categories")
    async def products(body: ProductsRequest) -> ProductsResponse:
        return await classify_products(served, settings, body.records)

    return router
