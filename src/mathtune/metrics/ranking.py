"""Ranking metrics over top-k predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def average_precision_at_k(y_true: Sequence[int], top_idx: np.ndarray, k: int = 3) -> np.ndarray:
    """Per-row AP@k with one relevant label: 1/rank if the true label is in the first k, else 0
    (the Kaggle MAP competition's MAP@3; a true label of -1, unknown to the model, always scores 0)."""
    y = np.asarray(y_true)[:, None]
    hits = top_idx[:, :k] == y
    ranks = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    return np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)


def map_at_k(y_true: Sequence[int], top_idx: np.ndarray, k: int = 3) -> float:
    if len(y_true) == 0:
        return 0.0
    return float(average_precision_at_k(y_true, top_idx, k).mean())
