"""Product category classification (seed 004): text, categorical, numeric and list-derived fields.

Field roles come from the recipe's ``products:`` section; the model is a scikit-learn pipeline (train/tabular.py).
Scored by accuracy, F1-macro and one-vs-rest AUC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ProductsConfig
from ..data.readers import require_columns
from ..errors import DataError
from ..metrics.classification import classification_metrics
from .base import column_labels, parse_settings, register_task, settings_as_dict
from .labels import LabelMap

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_number(value: str) -> float:
    """'₹32,999' -> 32999.0, '4.2' -> 4.2, '$1,234.50' -> 1234.5, '' or 'n/a' -> NaN."""
    match = _NUMBER.search(str(value).replace(",", ""))
    return float(match.group(0)) if match else float("nan")


def count_items(value: str) -> int:
    """Length of a JSON list, or of a comma/pipe-separated list; 0 for empty."""
    text = str(value).strip()
    if not text or text in ("[]", "nan", "None"):
        return 0
    if text.startswith("["):
        try:
            return len(json.loads(text))
        except json.JSONDecodeError:
            pass
    return len([p for p in re.split(r"[,|]", text.strip("[]")) if p.strip()])


@register_task
class ProductsTask:
    name = "products"
    settings_key = "products"
    settings_model = ProductsConfig
    primary_metric = "f1_macro"
    metric_order = ("f1_macro", "accuracy", "auc_ovr", "f1_micro", "f1_weighted")
    trainers = ("sklearn",)
    registered_name = "product-categories"
    route = "products"
    default_label_names: tuple[str, ...] = ()
    top_k = 1
    submission_columns = ("id", "label")

    def __init__(self, settings=None) -> None:
        self.settings = parse_settings(self.settings_model, settings)

    def settings_dict(self) -> dict:
        return settings_as_dict(self.settings)

    def raw_labels(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> list[str]:
        return column_labels(frame, label_column, path)





    def example_frame(self, manifest: dict) -> pd.DataFrame:
        return pd.DataFrame([{c: "1" for c in self.feature_columns()}])

    def feature_columns(self) -> list[str]:
        s = self.settings
        return [*s.text_fields, *s.categorical_fields, *s.numeric_fields, *s.list_count_fields]

    def features(self, frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
        """The model's input table: one text column, categoricals as strings, numbers and list counts as floats."""
        s = self.settings
        require_columns(frame, self.feature_columns(), path, hint="Set the products.*_fields of the recipe to the file's columns.")
        out = pd.DataFrame(index=frame.index)
        out["text"] = frame[s.text_fields].astype(str).agg(" ".join, axis=1).str.strip()
        for column in s.categorical_fields:
            out[f"cat_{column}"] = frame[column].astype(str).str.strip().replace("", "(missing)")
        for column in s.numeric_fields:
            out[f"num_{column}"] = frame[column].map(parse_number)
        for column in s.list_count_fields:
            out[f"count_{column}"] = frame[column].map(count_items).astype(float)
        return out.reset_index(drop=True)

    def inputs(self, frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]:
        features = self.features(frame, path)
        empty = [i + 1 for i, t in enumerate(features["text"]) if not t]
        if len(empty) == len(features) and len(features):
            raise DataError(f"{path}: every row has empty text fields ({', '.join(self.settings.text_fields)})")
        return features["text"].tolist()

    def clean(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> pd.DataFrame:
        """Drop duplicate rows and excluded labels, as the recipe says (before any split)."""
        s = self.settings
        if s.drop_duplicates_on:
            require_columns(frame, s.drop_duplicates_on, path, hint="Fix products.drop_duplicates_on.")
            frame = frame.drop_duplicates(subset=s.drop_duplicates_on)
        if s.exclude_labels and label_column in frame:
            frame = frame[~frame[label_column].astype(str).isin(s.exclude_labels)]
        return frame.reset_index(drop=True)

    def metrics(self, y_true: Sequence[int], top_idx: np.ndarray, labels: LabelMap, probs: np.ndarray | None = None) -> dict:
        metrics = classification_metrics(y_true, top_idx[:, 0], labels.names)
        if probs is not None:
            metrics["auc_ovr"] = ovr_auc(y_true, probs)
        return metrics


def ovr_auc(y_true: Sequence[int], probs: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in y_true."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true)
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    scores = probs[:, present]
    scores = scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    return float(roc_auc_score(y, scores, multi_class="ovr", labels=present))
