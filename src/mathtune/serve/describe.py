"""What /v1/models and the Models tab show of a served model: its description without server paths, and its plots."""

from __future__ import annotations

from pathlib import Path

PLOTS = ("confusion_matrix.png", "training_curve.png", "feature_importance.png", "cv_confusion_matrix.png")


def public_description(name: str, model, settings) -> dict:
    info = model.describe()
    folder = info.pop("folder")
    info["plots"] = [f"/v1/models/{name}/plots/{p}" for p in PLOTS if folder and (Path(folder) / p).is_file()]
    info["mlflow_ui_url"] = settings.mlflow_ui_url
    limit = getattr(settings, "tutor_time_budget", None)
    solve = info.get("solve")
    if solve is not None and limit is not None:  # the server's cap is what a vote gets
        solve["time_budget"] = min(solve.get("time_budget") or limit, limit)
    return info
