"""`mathtune evaluate` and `mathtune predict` on files, for any trained model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data.readers import read_table, write_table
from .errors import DataError
from .io import write_json
from .metrics.plots import confusion_matrix_png
from .models.saved import Predictor, load_predictor
from .paths import resolve_data_path
from .tasks import get_task


def task_of(predictor: Predictor):
    return get_task(predictor.task, predictor.manifest.get("task_settings") or None)


def _prepare(predictor: Predictor, data, text_column: str | None):
    path = resolve_data_path(data)
    frame = read_table(path)
    task = task_of(predictor)
    texts = task.inputs(frame, text_column or predictor.manifest.get("text_column", "Question"), str(path))
    allowed, notes = task.candidate_masks(frame, predictor.manifest.get("structure"), predictor.labels)
    return path, frame, task, texts, allowed, notes


def evaluate_file(model_dir: str | Path, data: str | Path, text_column: str | None = None,
                  label_column: str | None = None, json_out: str | Path | None = None,
                  plot_out: str | Path | None = None, reporter=None) -> dict:
    predictor = load_predictor(model_dir)
    path, frame, task, texts, allowed, notes = _prepare(predictor, data, text_column)
    raw = task.raw_labels(frame, label_column or "label", path)
    y_true = predictor.labels.encode(raw, path)
    if reporter:
        reporter.start("evaluate", len(texts))
    if predictor.kind == "sklearn":
        probs = predictor.probabilities(frame)
        metrics = task.metrics(y_true, np.argsort(-probs, axis=1)[:, :1], predictor.labels, probs)
    else:
        top_idx, _ = predictor.topk(texts, k=task.top_k, reporter=reporter, allowed=allowed)
        metrics = task.metrics(y_true, top_idx, predictor.labels)
    metrics.update({"model": str(model_dir), "data": str(path), "notes": notes})
    if json_out:
        write_json(json_out, metrics)
    if plot_out:
        matrix, names = task.confusion(metrics, predictor.labels)
        primary = task.primary_metric
        confusion_matrix_png(matrix, names, Path(plot_out), title=f"{Path(path).name}: {primary} {metrics[primary]:.4f}")
    return metrics


def predict_file(model_dir: str | Path, data: str | Path, output: str | Path, text_column: str | None = None,
                 id_column: str | None = None, reporter=None) -> tuple[pd.DataFrame, list[str]]:
    """Write predictions in the task's submission format (``id,label`` for topics,
    ``row_id,Category:Misconception`` with three space-separated labels for misconceptions)."""
    predictor = load_predictor(model_dir)
    path, frame, task, texts, allowed, notes = _prepare(predictor, data, text_column)
    id_column = id_column or predictor.manifest.get("id_column") or task.submission_columns[0]
    if id_column in frame.columns:
        ids = frame[id_column].astype(str).tolist()
    elif id_column != task.submission_columns[0]:
        raise DataError(f"{path}: no id column {id_column!r} (the file has: {', '.join(frame.columns)})")
    else:
        ids = [str(i) for i in range(len(frame))]
    if reporter:
        reporter.start("predict", len(texts))
    top_idx, _ = predictor.topk(texts, k=task.top_k, reporter=reporter, allowed=allowed, frame=frame)
    values = [[predictor.labels.values[i] for i in row] for row in top_idx]
    submission = task.submission(ids, values)
    write_table(submission, output)
    return submission, notes
