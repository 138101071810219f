"""What every prediction route shares: the served models behind them and request-table building."""

from __future__ import annotations

import pandas as pd
from fastapi import Depends, HTTPException

from ..models import ServedModel


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

    def served(self, task: str):
        """A route dependency: a request for a task nobody serves is a 404 before its body is read, so a client
        learns that first, not which fields its body lacks."""
        def dependency() -> None:
            self.model_for(task)
        return Depends(dependency)

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


def _records_frame(records: list[dict], settings) -> pd.DataFrame:
    if len(records) > settings.max_batch:
        raise HTTPException(status_code=413, detail=f"records: {len(records)} items is over the limit of {settings.max_batch}")
    for i, record in enumerate(records):
        if not all(isinstance(v, (str, int, float, bool, type(None))) for v in record.values()):
            raise HTTPException(status_code=422, detail=f"records[{i}]: field values must be texts or numbers")
    return pd.DataFrame([{k: "" if v is None else str(v) for k, v in r.items()} for r in records])
