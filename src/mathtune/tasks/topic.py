"""Topic classification of math questions (seed 000; Kaggle "Classification of Math Problems by Kasut Academy")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.classification import classification_metrics
from .base import (
    column_labels,
    parse_settings,
    register_task,
    settings_as_dict,
    text_column_inputs,
)
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


@register_task
class TopicTask:
    """One label per question; scored by F1-micro."""

    name = "topic"
    settings_key = None
    settings_model = None
    primary_metric = "f1_micro"
    metric_order = ("f1_micro", "f1_macro", "f1_weighted", "accuracy")
    trainers = ("tfidf", "finetune", "embedding", "ensemble")
    registered_name = "math-topics"
    route = "topics"
    default_label_names: tuple[str, ...] = tuple(TOPIC_NAMES)
    top_k = 1
    submission_columns = ("id", "label")

    def __init__(self, settings=None) -> None:
        self.settings = parse_settings(self.settings_model, settings)

    def settings_dict(self) -> dict:
        return settings_as_dict(self.settings)

    def inputs(self, frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]:
        """Model inputs: the question text, with bytes-literal rows decoded."""
        return text_column_inputs(frame, text_column, path)

    def raw_labels(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> list[str]:
        return column_labels(frame, label_column, path)

    def metrics(self, y_true: Sequence[int], top_idx: np.ndarray, labels: LabelMap, probs: np.ndarray | None = None) -> dict:
        return classification_metrics(y_true, top_idx[:, 0], labels.names)

    def clean(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> pd.DataFrame:
        """Rows to drop before any split (none, for topics)."""
        return frame





    def example_frame(self, manifest: dict) -> pd.DataFrame:
        """One plausible input row (the server's warm-up request)."""
        return pd.DataFrame([{manifest.get("text_column", "Question"): "Find the limit of (1+1/n)^n as n approaches infinity."}])
