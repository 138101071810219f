"""Trained model folders: one predictor interface over every model kind (models/kinds.py).

A folder holds ``mathtune.json`` (task, kind, labels, inputs), ``metrics.json``, ``recipe.yaml``, plots, and the
kind's files: ``tfidf.json`` + arrays, ``pipeline.skops``, or ``model/`` (transformers safetensors + tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..tasks.base import candidates_of
from ..tasks.labels import LabelMap
from .folder import HF_SUBDIR, MANIFEST, load_classifier_files, read_manifest  # noqa: F401 (re-exported)
from .kinds import get_kind
from .tfidf import tfidf_topk_variants  # noqa: F401 (re-exported)

# Rows per forward pass when scoring: rows are sorted by length first, so smaller passes pad less; a 32-question
# micro-batch of topic questions took 186-196 ms as two passes of 16 against 236-355 ms as one pass (MiniLM, bf16).
SCORE_BATCH = 16


@dataclass
class Predictor:
    folder: Path
    manifest: dict
    labels: LabelMap
    _model: Any = None
    _tokenizer: Any = None
    _onnx: Any = None
    _task: Any = None
    backend: str = "torch"
    onnx_max_rows: int = 4

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def task_object(self):
        """The task, with the settings the model was trained with."""
        if self._task is None:
            from ..tasks import get_task

            self._task = get_task(self.task, self.manifest.get("task_settings") or None)
        return self._task

    def predict_frame(self, frame, k: int, text_column: str | None = None, source: str = "input", reporter=None):
        """Rows of a table -> the task's inputs -> top-k under the task's candidate masks.
        Returns ids, probabilities, notes for the user, and the model inputs (for drift monitoring)."""
        task = self.task_object
        texts = task.inputs(frame, text_column or self.manifest.get("text_column", "Question"), source)
        allowed, notes = candidates_of(task, frame, self.manifest.get("structure"), self.labels)
        idx, prob = self.topk(texts, k=k, reporter=reporter, allowed=allowed, frame=frame)
        return idx, prob, notes, texts

    def topk(self, texts: Sequence[str], k: int = 1, batch_size: int = SCORE_BATCH, reporter=None,
             allowed: np.ndarray | None = None, frame=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k label ids and probabilities per text, over the labels ``allowed`` for each row (default all).
        Tabular (products) models read their fields from ``frame``."""
        return self.topk_variants(texts, k, {"only": allowed}, batch_size, reporter, frame)["only"]

    def probabilities(self, frame) -> np.ndarray:
        """Full class probabilities of a tabular (products) model."""
        from .tabular import full_probabilities

        return full_probabilities(self._model, self.task_object.features(frame, "input"), len(self.labels))

    def load_member(self, folder: Path, backend: str = "torch") -> Predictor:
        """Another model folder inside this one (an ensemble's members), loaded like any model folder."""
        return load_predictor(folder, backend)

    def topk_variants(self, texts: Sequence[str], k: int, variants: dict[str, np.ndarray | None],
                      batch_size: int = SCORE_BATCH, reporter=None, frame=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Like topk, for several candidate masks at the cost of one pass of the model."""
        return get_kind(self.kind, self.folder).topk_variants(self, texts, min(k, len(self.labels)), variants,
                                                             batch_size, reporter, frame)


def load_predictor(folder: str | Path, backend: str = "torch") -> Predictor:
    """backend: torch; onnx or onnx-int8 (transformer models exported with `mathtune export --onnx`)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        labels = LabelMap.from_dict(manifest["labels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{folder / MANIFEST}: its labels are missing or malformed ({exc!r}); train the model again") from None
    predictor = Predictor(folder, manifest, labels)
    get_kind(manifest["kind"], folder).load(predictor, backend)
    check_settings(predictor)
    return predictor


def check_settings(predictor: Predictor) -> None:
    """ModelError naming the field of ``mathtune.json`` that the loaded model cannot work with (a hand-edited or
    damaged file), so a server refuses the model at load instead of answering wrongly or failing per request."""
    path, manifest = predictor.folder / MANIFEST, predictor.manifest
    config = getattr(predictor._model, "config", None)
    if manifest.get("max_length") is not None:
        value, most = manifest["max_length"], getattr(config, "max_position_embeddings", None) or 1_000_000
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ModelError(f"{path}: max_length is {value!r}; it must be a whole number from 1 to {most} (what this "
                             "model can read); fix the file or train the model again")
    calibration = manifest.get("calibration")
    if calibration is not None:
        value = calibration.get("temperature") if isinstance(calibration, dict) else calibration
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
            raise ModelError(f"{path}: calibration.temperature is {value!r}; it must be a positive number (the "
                             "scores' divisor fitted at training); fix the file or train the model again")
    scored = _classes_scored(predictor._model)
    if scored is not None and scored > len(predictor.labels):
        raise ModelError(f"{path}: labels lists {len(predictor.labels)} classes, but the model scores {scored}; fix "
                         "the file or train the model again")


def _classes_scored(model) -> int | None:
    """How many label ids the loaded model scores (a linear model may score fewer than the labels: those absent
    from its training data); None where the kind does not say (ensembles, embeddings)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_labels", None):
        return int(config.num_labels)
    for name in ("classes", "classes_"):
        classes = getattr(model, name, None)
        if classes is not None and len(classes):
            try:
                return int(np.max(np.asarray(classes).astype(int))) + 1
            except (TypeError, ValueError):
                return len(classes)
    return None
