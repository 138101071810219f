"""The task contract and its registry.

A task says what a recipe's rows mean and how a model of it is judged and served. Classification tasks
(topic, misconception, products, and any you register) implement ``ClassificationTask``; the generative tutor
implements the smaller ``GenerativeTask``. Both register with ``register_task``; everything else (recipes,
training, evaluation, the CLI, the server) looks tasks up here by name instead of comparing strings.

Tasks share helpers (the functions below), not base-class behaviour: each task class states every part of the
contract itself, so reading one file tells what that task does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from ..data.readers import check_nonempty, clean_texts, require_columns
from ..errors import DataError, RecipeError
from .labels import LabelMap

# Metrics where lower is better; every other metric a task reports is better when higher.
LOWER_IS_BETTER = frozenset({"loss", "val_loss", "train_loss", "perplexity", "false_refusal_rate", "ece"})


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER and not metric.endswith("_loss")


@runtime_checkable
class Task(Protocol):
    """What every task declares."""

    name: ClassVar[str]                 # the recipe's `task:` value
    settings_key: ClassVar[str | None]  # the recipe section with its settings (None: no section)
    settings_model: ClassVar[type | None]
    primary_metric: ClassVar[str]       # the metric that picks the best epoch and heads every report
    metric_order: ClassVar[tuple[str, ...]]  # how the CLI orders the scalar metrics (others follow)
    trainers: ClassVar[tuple[str, ...]]  # the trainers (train/trainers.py) that can fit it
    registered_name: ClassVar[str]      # the MLflow registered-model name by default
    route: ClassVar[str]                # the serving path: POST /v1/<route>

    def settings_dict(self) -> dict: ...


@runtime_checkable
class ClassificationTask(Task, Protocol):
    """Rows -> model inputs and labels -> top-k labels -> metrics and a submission file."""

    default_label_names: ClassVar[tuple[str, ...]]
    top_k: ClassVar[int]
    submission_columns: ClassVar[tuple[str, str]]

    def inputs(self, frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]: ...
    def raw_labels(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> list[str]: ...
    def clean(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> pd.DataFrame: ...
    def metrics(self, y_true: Sequence[int], top_idx: np.ndarray, labels: LabelMap,
                probs: np.ndarray | None = None) -> dict: ...
    def example_frame(self, manifest: dict) -> pd.DataFrame: ...

    # Optional (the functions below supply the default when a task does not define them):
    #   structure(frame, raw_labels, labels) -> dict | None: what the task learns from training rows besides
    #       the model (default: nothing);
    #   candidate_masks(frame, structure, labels, switches=None) -> (mask | None, notes): which labels each row
    #       may get (default: all);
    #   submission(ids, top_values) -> DataFrame: the competition's file (default: `submission_columns`, top-1);
    #   confusion(metrics, labels) -> (matrix, names): what the confusion plot shows (default: all labels).


TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: make a task known to recipes, training, the CLI and the server."""
    missing = [a for a in ("name", "settings_key", "settings_model", "primary_metric", "metric_order", "trainers",
                           "registered_name", "route") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"task {cls.__name__}: missing {', '.join(missing)} (see mathtune.tasks.base.Task)")
    if cls.name in TASKS:
        raise RecipeError(f"task {cls.name!r} is already registered ({TASKS[cls.name].__name__}); choose another name")
    cls.greater_is_better = higher_is_better(cls.primary_metric)
    TASKS[cls.name] = cls
    return cls


def task_class(name: str) -> type:
    try:
        return TASKS[name]
    except KeyError:
        raise RecipeError(f"task: unknown task {name!r} (known: {', '.join(sorted(TASKS))})") from None


def get_task(name: str, settings=None):
    """The task object; ``settings`` is the recipe's task section (or its dict from a model manifest)."""
    return task_class(name)(settings)


def is_generative(task) -> bool:
    return not hasattr(task, "top_k")


# ----------------------------------------------------------------------------- helpers tasks share


def parse_settings(model: type | None, settings: Any):
    """The task's settings object from a recipe section, a manifest dict, or None (defaults)."""
    if model is None:
        return None
    if isinstance(settings, dict):
        return model.model_validate(settings)
    return settings or model()


def settings_as_dict(settings) -> dict:
    return settings.model_dump() if settings is not None else {}


def text_column_inputs(frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]:
    """One text column (bytes-literal rows decoded); empty rows are an error that names them."""
    require_columns(frame, [text_column], path, hint="Set data.text_column (or --text-column) to the text column.")
    texts = clean_texts(frame[text_column].astype(str).tolist())
    # a chunk of a streamed file keeps the file's row numbers in its index
    first = int(frame.index[0]) + 1 if len(frame) and isinstance(frame.index, pd.RangeIndex) else 1
    check_nonempty(texts, text_column, path, first)
    return texts


def column_labels(frame: pd.DataFrame, label_column: str, path: str | Path) -> list[str]:
    """Labels as text from one column; empty labels are an error that names the rows."""
    require_columns(frame, [label_column], path, hint="Set data.label_column (or --label-column) to the label column.")
    values = frame[label_column].astype(str).str.strip().tolist()
    empty = [i + 1 for i, v in enumerate(values) if not v]
    if empty:
        raise DataError(f"{path}: column {label_column} is empty in data row(s) {', '.join(map(str, empty[:10]))}")
    return values


def id_label_submission(ids: list[str], top_values: list[list[str]], columns=("id", "label")) -> pd.DataFrame:
    return pd.DataFrame({columns[0]: ids, columns[1]: [v[0] for v in top_values]})


def label_confusion(metrics: dict, labels: LabelMap) -> tuple[list, list[str]]:
    return metrics["confusion_matrix"], labels.names


def structure_of(task, frame: pd.DataFrame, raw_labels: list[str], labels: LabelMap) -> dict | None:
    method = getattr(task, "structure", None)
    return method(frame, raw_labels, labels) if method else None


def candidates_of(task, frame: pd.DataFrame, structure: dict | None, labels: LabelMap,
                  switches: dict | None = None) -> tuple[np.ndarray | None, list[str]]:
    method = getattr(task, "candidate_masks", None)
    if method is None:
        return None, []
    return method(frame, structure, labels, switches) if switches is not None else method(frame, structure, labels)


def submission_of(task, ids: list[str], top_values: list[list[str]]) -> pd.DataFrame:
    method = getattr(task, "submission", None)
    return method(ids, top_values) if method else id_label_submission(ids, top_values, task.submission_columns)


def confusion_of(task, metrics: dict, labels: LabelMap) -> tuple[list, list[str]]:
    method = getattr(task, "confusion", None)
    return method(metrics, labels) if method else label_confusion(metrics, labels)
