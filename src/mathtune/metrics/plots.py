"""Plots people would rather look at than tables: confusion matrix, training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_matrix_png(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path, title: str = "") -> Path:
    cm = np.asarray(matrix, dtype=float)
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros_like(cm), where=row_sums > 0)
    n = len(names)
    size = max(5.0, 0.75 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (row share, counts)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def training_curve_png(history: list[dict], path: Path, metric: str) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    if any("train_loss" in h for h in history):
        ax1.plot(epochs, [h.get("train_loss") for h in history], "o-", color="tab:red", label="train loss")
    if any("val_loss" in h for h in history):
        ax1.plot(epochs, [h.get("val_loss") for h in history], "s--", color="tab:orange", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h.get(metric) for h in history], "^-", color="tab:blue", label=f"validation {metric}")
    ax2.set_ylabel(metric)
    lines = ax1.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax1.set_title("Training curve")
    return _save(fig, path)


def feature_importance_png(items: list[tuple[str, float]], path: Path, title: str = "Feature importance") -> Path:
    names = [n for n, _ in items][::-1]
    values = [v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.28 * len(items) + 1)))
    ax.barh(range(len(values)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), labels=[n[:60] for n in names], fontsize=8)
    ax.set_xlabel("importance")
    ax.set_title(title)
    return _save(fig, path)


def reliability_png(bins: Sequence, path: Path, ece: float, ece_before: float | None = None) -> Path:
    """A reliability diagram: for each band of how sure the model said it was (top-1 probability), how often it
    was right; bars on the diagonal are percentages that mean what they say. ``bins``: metrics/calibration.py's
    ReliabilityBin list."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="right as often as it says")
    for b in bins:
        ax.bar((b.low + b.high) / 2, b.accuracy, width=(b.high - b.low) * 0.9, color="tab:blue", alpha=0.8)
        ax.text((b.low + b.high) / 2, b.accuracy + 0.015, str(b.rows), ha="center", fontsize=7)
    ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], "o", color="tab:orange", markersize=4,
            label="mean of the band (questions above each bar)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("how sure it said it was (top answer's probability)")
    ax.set_ylabel("how often it was right")
    change = f", {ece_before:.3f} before temperature scaling" if ece_before is not None else ""
    ax.set_title(f"Validation: does it mean what it says?\ncalibration error {ece:.3f}{change}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=7, frameon=False)
    return _save(fig, path)
