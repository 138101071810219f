"""What /v1/models and the Models tab show of a served model: its description without server paths, and its plots."""

from __future__ import annotations

from pathlib import Path

PLOTS = ("confusion_matrix.png", "training_curve.png", "calibration.png", "feature_importance.png",
         "cv_confusion_matrix.png")


def plot_file(folder, file: str) -> Path | None:
    """The plot ``file`` of a model folder when it is a regular file inside the folder: a symlink (to
    ``/etc/passwd``, say) or anything that resolves outside is not served."""
    if not folder or file not in PLOTS:
        return None
    path = Path(folder) / file
    if path.is_symlink() or not path.is_file():
        return None
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        return None
    return path


def public_description(name: str, model, settings) -> dict:
    info = model.describe()
    folder = info.pop("folder")
    info["plots"] = [f"/v1/mathtune/models/{name}/plots/{p}" for p in PLOTS if plot_file(folder, p)]
    info["mlflow_ui_url"] = settings.mlflow_ui_url
    if info.get("solve") is not None:  # what a vote gets: the tutor's own budget within the server's cap
        from ..config import SolveConfig
        from .tutor_service import within_time

        info["solve"] = within_time(SolveConfig.model_validate(info["solve"]), settings.tutor_time_budget).model_dump(mode="json")
    return info
