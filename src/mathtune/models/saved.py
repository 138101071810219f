"""Trained model folders: the manifest, and one predictor interface over TF-IDF and transformer models.

A folder holds ``mathtune.json`` (task, kind, labels, inputs), ``metrics.json``, ``recipe.yaml``, plots, and
either ``model.skops`` or ``model/`` (a transformers model in safetensors with its tokenizer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError
from ..tasks.labels import LabelMap

MANIFEST = "mathtune.json"
HF_SUBDIR = "model"
# Rows per forward pass when scoring: rows are sorted by length first, so smaller passes pad less; a 32-question
# micro-batch of topic questions took 186-196 ms as two passes of 16 against 236-355 ms as one pass (MiniLM, bf16).
SCORE_BATCH = 16


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        hint = " (a run killed mid-way leaves a .partial folder; run the same train command to resume)" \
            if folder.with_name(folder.name + ".partial").exists() else ""
        raise ModelError(f"{folder}: not a mathtune model folder (no {MANIFEST}){hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc}); the folder is damaged: train the model again or copy "
                         f"the folder again") from None
    missing = [k for k in ("task", "kind") if not isinstance(manifest, dict) or not isinstance(manifest.get(k), str)]
    if missing:
        raise ModelError(f"{path}: missing or wrong {', '.join(missing)}; the folder is damaged: train the model again")
    return manifest


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
        allowed, notes = task.candidate_masks(frame, self.manifest.get("structure"), self.labels)
        idx, prob = self.topk(texts, k=k, reporter=reporter, allowed=allowed, frame=frame)
        return idx, prob, notes, texts

    def topk(self, texts: Sequence[str], k: int = 1, batch_size: int = SCORE_BATCH, reporter=None,
             allowed: np.ndarray | None = None, frame=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k label ids and probabilities per text, over the labels ``allowed`` for each row (default all).
        Tabular (products) models read their fields from ``frame``."""
        return self.topk_variants(texts, k, {"only": allowed}, batch_size, reporter, frame)["only"]

    def probabilities(self, frame) -> np.ndarray:
        """Full class probabilities of a tabular (products) model."""
        from ..train.tabular import full_probabilities

        return full_probabilities(self._model, self.task_object.features(frame, "input"), len(self.labels))

    def topk_variants(self, texts: Sequence[str], k: int, variants: dict[str, np.ndarray | None],
                      batch_size: int = SCORE_BATCH, reporter=None, frame=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Like topk, for several candidate masks at the cost of one pass of the model."""
        k = min(k, len(self.labels))
        if self.kind == "sklearn":
            if frame is None:
                raise ModelError(f"{self.folder}: a products model needs the record fields, not only text")
            probs = self.probabilities(frame)
            idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            if reporter:
                reporter.advance(len(probs))
            return {name: (idx, np.take_along_axis(probs, idx, axis=1)) for name in variants}
        if self.kind == "tfidf":
            return tfidf_topk_variants(self._model, texts, len(self.labels), k, variants, reporter)
        from ..train.finetune import score_variants, tokenize

        ids = tokenize(self._tokenizer, texts, self.manifest.get("max_length", 256))
        if self._onnx is not None and len(ids) <= self.onnx_max_rows:
            # ONNX Runtime (int8) wins for a few rows: 2x the single-request rate of PyTorch here; for larger
            # micro-batches PyTorch's bf16 matmuls (AMX) win, 2-3x, so those take the PyTorch path
            from .onnx import onnx_topk

            out = onnx_topk(self._onnx, ids, self._tokenizer.pad_token_id, batch_size, k, variants)
            if reporter:
                reporter.advance(len(ids))
            return out
        out, _ = score_variants(self._model, ids, self._tokenizer.pad_token_id, batch_size, k,
                                variants=variants, reporter=reporter)
        return out


def tfidf_topk_variants(model, texts: Sequence[str], num_labels: int, k: int, variants: dict,
                        reporter=None, chunk: int = 1024) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from ..train.classical import class_probabilities

    n = len(texts)
    out = {name: (np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.float32)) for name in variants}
    for start in range(0, n, chunk):
        probs = class_probabilities(model, texts[start:start + chunk], num_labels)
        for name, allowed in variants.items():
            p = probs if allowed is None else np.where(allowed[start:start + chunk], probs, 0.0)
            p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
            idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
            out[name][0][start:start + len(p)] = idx
            out[name][1][start:start + len(p)] = np.take_along_axis(p, idx, axis=1)
        if reporter:
            reporter.advance(len(probs))
    return out


def load_classifier_files(path: Path, **kwargs):
    """Tokenizer and sequence classifier of a model folder's ``model/``; damaged files are one clear error."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # use_safetensors: never unpickle a .bin from a model folder.
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - truncated safetensors, a config with wrong types, a missing file
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ModelError(f"{path}: cannot load the model ({type(exc).__name__}: {first}); the files are damaged "
                         f"or incomplete: train the model again or copy the folder again") from None
    return tokenizer, model


def load_predictor(folder: str | Path, backend: str = "torch") -> Predictor:
    """backend: torch; onnx or onnx-int8 (transformer models exported with `mathtune export --onnx`)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        labels = LabelMap.from_dict(manifest["labels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{folder / MANIFEST}: its labels are missing or malformed ({exc!r}); train the model again") from None
    predictor = Predictor(folder, manifest, labels)
    if manifest["kind"] == "tfidf":
        from ..train.classical import load

        predictor._model = load(folder)
    elif manifest["kind"] == "sklearn":
        from ..train.tabular import load as load_pipeline

        predictor._model = load_pipeline(folder)
    elif manifest["kind"] == "transformer":
        predictor._tokenizer, predictor._model = load_classifier_files(folder / HF_SUBDIR)
        predictor._model.eval()
        if backend != "torch":
            from .onnx import OnnxClassifier

            files = manifest.get("onnx", {}).get("files", {})
            key = "int8" if backend == "onnx-int8" else "fp32"
            if key not in files:
                raise ModelError(f"{folder}: no {backend} export; run `mathtune export {folder} --onnx"
                                 f"{' --int8' if key == 'int8' else ''}` first")
            predictor._onnx = OnnxClassifier(folder / files[key])
            predictor.backend = backend
    else:
        raise ModelError(f"{folder}: unknown model kind {manifest['kind']!r}")
    return predictor
