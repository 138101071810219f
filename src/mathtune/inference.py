"""`mathtune evaluate` and `mathtune predict` on files, for any trained model folder."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from .data.readers import count_rows, detect_format, iter_table, read_table, write_table
from .errors import DataError
from .io import write_json
from .metrics.calibration import expected_calibration_error, top1_outcomes, when_sure
from .metrics.plots import confusion_matrix_png
from .models.saved import load_predictor
from .paths import resolve_data_path
from .tasks.base import confusion_of, submission_of


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
        top_idx = np.argsort(-probs, axis=1)[:, :1]
        top_prob = np.take_along_axis(probs, top_idx, axis=1)
        metrics = task.metrics(y_true, top_idx, predictor.labels, probs)
    else:
        top_idx, top_prob, notes, _ = predictor.predict_frame(frame, task.top_k, text_column, str(path), reporter)
        metrics = task.metrics(y_true, top_idx, predictor.labels)
    # do its percentages hold on these rows? (the validation figure is on the split it was tuned on)
    confidence, correct = top1_outcomes(top_idx, top_prob, y_true)
    metrics["calibration_error"] = round(expected_calibration_error(confidence, correct), 6)
    metrics["when_sure"] = when_sure(confidence, correct)
    metrics.update({"model": str(model_dir), "data": str(path), "notes": notes})
    if json_out:
        write_json(json_out, metrics)
    if plot_out:
        matrix, names = confusion_of(task, metrics, predictor.labels)
        primary = task.primary_metric
        confusion_matrix_png(matrix, names, Path(plot_out), title=f"{Path(path).name}: {primary} {metrics[primary]:.4f}")
    return metrics


def predict_file(model_dir: str | Path, data: str | Path, output: str | Path, text_column: str | None = None,
                 id_column: str | None = None, reporter=None, chunk_rows: int = 10_000) -> tuple[int, list[str]]:
    """Write predictions in the task's submission format (``id,label`` for topics,
    ``row_id,Category:Misconception`` with three space-separated labels for misconceptions). The input is read
    and predicted in chunks of ``chunk_rows`` and a CSV output is written as it goes (bounded memory for any
    number of rows); the output appears only when every row is done. Returns the number of rows and the notes."""
    from .io import atomic_path, spreadsheet_safe_frame

    predictor = load_predictor(model_dir)
    task = predictor.task_object
    path = resolve_data_path(data)
    if reporter:
        reporter.start("predict", count_rows(path))
    output = Path(output)
    streamed = detect_format(output) == "csv" and output.suffix.lower() != ".gz"
    parts: list[pd.DataFrame] = []
    notes: dict[str, None] = {}
    done = 0
    with (atomic_path(output) if streamed else nullcontext()) as tmp, \
            (open(tmp, "w", encoding="utf-8", newline="") if streamed else nullcontext()) as out:
        for frame in iter_table(path, chunk_rows):
            ids = _ids(frame, id_column or predictor.manifest.get("id_column") or task.submission_columns[0],
                       task.submission_columns[0], path, done)
            top_idx, _, chunk_notes, _ = predictor.predict_frame(frame, task.top_k, text_column, str(path), reporter)
            notes.update(dict.fromkeys(chunk_notes))
            submission = submission_of(task, ids, [[predictor.labels.values[i] for i in row] for row in top_idx])
            if streamed:  # written as it goes; the file appears under its name only when every row is done
                spreadsheet_safe_frame(submission).to_csv(out, index=False, header=done == 0)
            else:
                parts.append(submission)
            done += len(frame)
        if done == 0:
            raise DataError(f"{path}: the file has no rows, only a header; add the rows to predict")
    if not streamed:  # Parquet, JSON lines, gzip: collected, then written atomically
        write_table(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(task.submission_columns)),
                    output)
    return done, list(notes)


def _ids(frame: pd.DataFrame, id_column: str, default: str, path, offset: int) -> list[str]:
    if id_column in frame.columns:
        return frame[id_column].astype(str).tolist()
    if id_column != default:
        raise DataError(f"{path}: no id column {id_column!r} (the file has: {', '.join(frame.columns)})")
    return [str(offset + i) for i in range(len(frame))]
