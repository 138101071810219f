"""`mathtune evaluate` and `mathtune predict` on files, for any trained model folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data.readers import read_table, require_columns
from .errors import DataError
from .io import write_json
from .metrics.classification import classification_metrics
from .metrics.plots import confusion_matrix_png
from .models.saved import Predictor, load_predictor
from .paths import resolve_data_path
from .tasks import get_task


def _texts(predictor: Predictor, frame: pd.DataFrame, source: str, text_column: str | None) -> list[str]:
    column = text_column or predictor.manifest.get("text_column", "Question")
    return get_task(predictor.task).inputs(frame, column, source)


def evaluate_file(model_dir: str | Path, data: str | Path, text_column: str | None = None,
                  label_column: str | None = None, json_out: str | Path | None = None,
                  plot_out: str | Path | None = None, reporter=None) -> dict:
    predictor = load_predictor(model_dir)
    path = resolve_data_path(data)
    frame = read_table(path)
    texts = _texts(predictor, frame, str(path), text_column)
    label_column = label_column or "label"
    require_columns(frame, [label_column], path,
                    hint="evaluate needs labelled data; pass --label-column, or use `mathtune predict` for unlabelled files.")
    y_true = predictor.labels.encode(frame[label_column].astype(str).tolist(), path)
    if reporter:
        reporter.start("evaluate", len(texts))
    top_idx, _ = predictor.topk(texts, k=1, reporter=reporter)
    metrics = classification_metrics(y_true, top_idx[:, 0], predictor.labels.names)
    metrics["model"] = str(model_dir)
    metrics["data"] = str(path)
    if json_out:
        write_json(json_out, metrics)
    if plot_out:
        confusion_matrix_png(metrics["confusion_matrix"], predictor.labels.names, Path(plot_out),
                             title=f"{Path(path).name}: F1-micro {metrics['f1_micro']:.4f}")
    return metrics


def predict_file(model_dir: str | Path, data: str | Path, output: str | Path, text_column: str | None = None,
                 id_column: str | None = None, reporter=None) -> pd.DataFrame:
    """Write predictions in the task's submission format (``id,label`` for topics)."""
    predictor = load_predictor(model_dir)
    path = resolve_data_path(data)
    frame = read_table(path)
    texts = _texts(predictor, frame, str(path), text_column)
    id_column = id_column or predictor.manifest.get("id_column") or "id"
    if id_column in frame.columns:
        ids = frame[id_column].astype(str).tolist()
    elif id_column != "id":
        raise DataError(f"{path}: no id column {id_column!r} (the file has: {', '.join(frame.columns)})")
    else:
        ids = [str(i) for i in range(len(frame))]
    task = get_task(predictor.task)
    if reporter:
        reporter.start("predict", len(texts))
    top_idx, _ = predictor.topk(texts, k=task.top_k, reporter=reporter)
    values = [[predictor.labels.values[i] for i in row] for row in top_idx]
    submission = task.submission(ids, values)
    from .data.readers import write_table

    write_table(submission, output)
    return submission
