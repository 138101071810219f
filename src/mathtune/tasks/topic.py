"""Topic classification of math questions (seed 000; Kaggle "Classification of Math Problems by Kasut Academy")."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.readers import check_nonempty, clean_texts, require_columns
from ..errors import DataError
from ..metrics.classification import classification_metrics
from .labels import LabelMap

TOPIC_NAMES = [
    "Algebra",
    "Geometry and Trigonometry",
    "Calculus and Analysis",
    "Probability and Statistics",
    "Number Theory",
    "Combinatorics and Discrete Math",
    "Linear Algebra",
    "Abstract Algebra and Topology",
]


class TopicTask:
    """One label per question; scored by F1-micro. Also the base for other single-text classification tasks."""

    name = "topic"
    primary_metric = "f1_micro"
    default_label_names: tuple[str, ...] = tuple(TOPIC_NAMES)
    registered_name = "math-topics"
    top_k = 1
    submission_columns = ("id", "label")
    settings_model = None  # the recipe section's pydantic model, for tasks that have settings

    def __init__(self, settings=None) -> None:
        if self.settings_model is not None:
            if isinstance(settings, dict):  # from a model manifest
                settings = self.settings_model.model_validate(settings)
            settings = settings or self.settings_model()
        self.settings = settings

    def settings_dict(self) -> dict:
        return self.settings.model_dump() if self.settings is not None else {}

    def inputs(self, frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]:
        """Model inputs: the question text, with bytes-literal rows decoded."""
        require_columns(frame, [text_column], path, hint="Set data.text_column (or --text-column) to the question column.")
        texts = clean_texts(frame[text_column].astype(str).tolist())
        check_nonempty(texts, text_column, path)
        return texts

    def raw_labels(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> list[str]:
        require_columns(frame, [label_column], path, hint="Set data.label_column (or --label-column) to the label column.")
        values = frame[label_column].astype(str).str.strip().tolist()
        empty = [i + 1 for i, v in enumerate(values) if not v]
        if empty:
            raise DataError(f"{path}: column {label_column} is empty in data row(s) {', '.join(map(str, empty[:10]))}")
        return values

    def metrics(self, y_true: Sequence[int], top_idx: np.ndarray, labels: LabelMap, probs: np.ndarray | None = None) -> dict:
        return classification_metrics(y_true, top_idx[:, 0], labels.names)

    def clean(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> pd.DataFrame:
        """Rows to drop before any split (none, for topics)."""
        return frame

    def structure(self, frame: pd.DataFrame, raw_labels: list[str], labels: LabelMap) -> dict | None:
        """What the task learns from the training rows besides the model (nothing, for topics)."""
        return None

    def candidate_masks(self, frame: pd.DataFrame, structure: dict | None, labels: LabelMap,
                        switches: dict | None = None) -> tuple[np.ndarray | None, list[str]]:
        """Which labels each row may get (None: all), and notes for the user."""
        return None, []

    def submission(self, ids: list[str], top_values: list[list[str]]) -> pd.DataFrame:
        """The competition's format: ``id,label``."""
        return pd.DataFrame({"id": ids, "label": [v[0] for v in top_values]})

    def confusion(self, metrics: dict, labels: LabelMap) -> tuple[list, list[str]]:
        return metrics["confusion_matrix"], labels.names
