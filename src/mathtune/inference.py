"""`mathtune evaluate` and `mathtune predict` on files, for any trained model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data.readers import read_table, write_table
from .errors import DataError
from .io import write_json
from .metrics.plots import confusion_matrix_png
from .models.saved import load_predictor
from .tasks.base import confusion_of, submission_of
from .paths import resolve_data_path


def evaluate_file(model_dir: str | Path, data: str | Path, text_column: str | None = None,
                  label_column: str | None = None, json_out: str | Path | None = None,
                  plot_out: str | Path | None = None, reporter=None) -> dict:
    predictor = load_predictor(model_dir)
    task = predictor.task_object
    path = resolve_data_path(data)
    frame = read_table(path)
    y_true = predictor.labels.encode(task.raw_labels(frame, label_column or "label", path), path)
    if reporter:
        reporter.start("evaluate", len(frame))
    if predictor.kind == "sklearn":  # full probabilities, for the one-vs-rest AUC
        probs = predictor.probabilities(frame)
        notes: list[str] = []
        metrics = task.metrics(y_true, np.argsort(-probs, axis=1)[:, :1], predictor.labels, probs)
    else:
        top_idx, _, notes, _ = predictor.predict_frame(frame, task.top_k, text_column, str(path), reporter)
        metrics = task.metrics(y_true, top_idx, predictor.labels)
    metrics.update({"model": str(model_dir), "data": str(path), "notes": notes})
    if json_out:
        write_json(json_out, metrics)
    if plot_out:
        matrix, names = confusion_of(task, metrics, predictor.labels)
        primary = task.primary_metric
        confusion_matrix_png(matrix, names, Path(plot_out), title=f"{Path(path).name}: {primary} {metrics[primary]:.4f}")
    return metrics


def predict_file(model_dir: str | Path, data: str | Path, output: str | Path, text_column: str | None = None,
                 id_column: str | None = None, reporter=None) -> tuple[pd.DataFrame, list[str]]:
    """Write predictions in the task's submission format (``id,label`` for topics,
    ``row_id,Category:Misconception`` with three space-separated labels for misconceptions)."""
    predictor = load_predictor(model_dir)
    task = predictor.task_object
    path = resolve_data_path(data)
    frame = read_table(path)
    id_column = id_column or predictor.manifest.get("id_column") or task.submission_columns[0]
    if id_column in frame.columns:
        ids = frame[id_column].astype(str).tolist()
    elif id_column != task.submission_columns[0]:
        raise DataError(f"{path}: no id column {id_column!r} (the file has: {', '.join(frame.columns)})")
    else:
        ids = [str(i) for i in range(len(frame))]
    if reporter:
        reporter.start("predict", len(frame))
    top_idx, _, notes, _ = predictor.predict_frame(frame, task.top_k, text_column, str(path), reporter)
    values = [[predictor.labels.values[i] for i in row] for row in top_idx]
    submission = submission_of(task, ids, values)
    write_table(submission, output)
    return submission, notes
