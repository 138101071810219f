"""Top-k labels from full probability tables under candidate-label masks (ensembles, embedding models)."""

from __future__ import annotations

import numpy as np


def masked_topk(probs: np.ndarray, k: int, variants: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, allowed in variants.items():
        p = probs if allowed is None else np.where(allowed, probs, 0.0)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
        idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
        out[name] = (idx, np.take_along_axis(p, idx, axis=1).astype(np.float32))
    return out
