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


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        hint = " (a run killed mid-way leaves a .partial folder; run the same train command to resume)" \
            if folder.with_name(folder.name + ".partial").exists() else ""
        raise ModelError(f"{folder}: not a mathtune model folder (no {MANIFEST}){hint}")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class Predictor:
    folder: Path
    manifest: dict
    labels: LabelMap
    _model: Any = None
    _tokenizer: Any = None

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def topk(self, texts: Sequence[str], k: int = 1, batch_size: int = 64, reporter=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k label ids and probabilities per text."""
        k = min(k, len(self.labels))
        if self.kind == "tfidf":
            from ..train.classical import class_probabilities

            idx_parts, prob_parts = [], []
            for start in range(0, len(texts), 1024):
                probs = class_probabilities(self._model, texts[start:start + 1024], len(self.labels))
                idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
                idx_parts.append(idx)
                prob_parts.append(np.take_along_axis(probs, idx, axis=1))
                if reporter:
                    reporter.advance(len(probs))
            if not idx_parts:
                return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
            return np.concatenate(idx_parts), np.concatenate(prob_parts)
        from ..train.finetune import score, tokenize

        ids = tokenize(self._tokenizer, texts, self.manifest.get("max_length", 256))
        top_idx, top_prob, _ = score(self._model, ids, self._tokenizer.pad_token_id, batch_size, k, reporter=reporter)
        return top_idx, top_prob


def load_predictor(folder: str | Path) -> Predictor:
    folder = Path(folder)
    manifest = read_manifest(folder)
    labels = LabelMap.from_dict(manifest["labels"])
    predictor = Predictor(folder, manifest, labels)
    if manifest["kind"] == "tfidf":
        from ..train.classical import load

        predictor._model = load(folder)
    elif manifest["kind"] == "transformer":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = folder / HF_SUBDIR
        try:
            predictor._tokenizer = AutoTokenizer.from_pretrained(path)
            # use_safetensors: never unpickle a .bin from a model folder.
            predictor._model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot load the model ({exc})") from None
        predictor._model.eval()
    else:
        raise ModelError(f"{folder}: unknown model kind {manifest['kind']!r}")
    return predictor
