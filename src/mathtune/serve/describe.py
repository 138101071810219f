"""What /v1/models and the Models tab show of a served model: its description without server paths, and its plots."""

from __future__ import annotations

from pathlib import Path

PLOTS = ("confusion_matrix.png", "training_curve.png", "feature_importance.png", "cv_confusion_matrix.png")


def public_description(name: str, model, settings) -> dict:
    info = model.describe()
    folder = info.pop("folder")
    info["plots"] = [f"/v1/models/{name}/plots/{p}" for p in PLOTS if folder and (Path(folder) / p).is_file()]
    info["mlflow_ui_url"] = settings.mlflow_ui_url
    if info.get("solve") is not None:  # what a vote gets: the tutor's own budget within the server's cap
        from ..config import SolveConfig
        from .tutor_service import within_time

        info["solve"] = within_time(SolveConfig.model_validate(info["solve"]), settings.tutor_time_budget).model_dump()
    return info
