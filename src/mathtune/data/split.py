"""Train/validation splits that survive rare classes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import DataError


def stratified_split(labels: Sequence, val_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), stratified by label.

    Classes with a single member cannot be split; they go to train (as the MAP seed does),
    so the model at least sees them once.
    """
    labels = list(labels)
    if len(labels) < 2:
        raise DataError(f"need at least 2 rows to split, got {len(labels)}")
    counts = Counter(labels)
    all_idx = np.arange(len(labels))
    singles = np.array([i for i in all_idx if counts[labels[i]] == 1], dtype=int)
    rest = np.array([i for i in all_idx if counts[labels[i]] > 1], dtype=int)
    if len(rest) < 2:
        raise DataError("every class has a single row: nothing can be held out for validation")
    rest_labels = [labels[i] for i in rest]
    n_classes = len(set(rest_labels))
    n_val = max(int(round(val_size * len(rest))), 1)
    stratify = rest_labels if n_classes <= n_val and len(rest) - n_val >= n_classes else None
    train_idx, val_idx = train_test_split(rest, test_size=n_val, random_state=seed, shuffle=True, stratify=stratify)
    train_idx = np.sort(np.concatenate([train_idx, singles]))
    return train_idx, np.sort(val_idx)


def stratified_subsample(labels: Sequence, n: int, seed: int = 0) -> np.ndarray:
    """At most ``n`` indices keeping the label mix (for quick runs with ``data.limit``)."""
    labels = list(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    keep, _ = stratified_split(labels, val_size=1 - n / len(labels), seed=seed)
    return keep
