"""Model kinds: one registry from the ``kind`` a model folder's manifest names to how it is loaded and scored.

A kind is an object with a ``name``, ``load(predictor, backend)`` (reads the folder's files into the predictor)
and ``topk_variants(predictor, texts, k, variants, batch_size, reporter, frame)`` (top-k ids and probabilities
under each candidate-label mask). Register a new one with ``register_kind``; trainers write the files and set
``kind`` in the manifest (train/trainers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelError
from .folder import HF_SUBDIR, load_classifier_files


class ModelKind(Protocol):
    name: str

    def load(self, predictor, backend: str) -> None: ...

    def topk_variants(self, predictor, texts: Sequence[str], k: int, variants: dict, batch_size: int, reporter,
                      frame) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...


KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str, folder: str | Path = "") -> ModelKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ModelError(f"{folder}: unknown model kind {name!r} (known: {', '.join(sorted(KINDS))})") from None


class TfidfKind:
    name = "tfidf"

    def load(self, predictor, backend: str) -> None:
        from .tfidf import load

        predictor._model = load(predictor.folder)

    def topk_variants(self, predictor, texts, k, variants, batch_size, reporter, frame):
        from .tfidf import tfidf_topk_variants

        return tfidf_topk_variants(predictor._model, texts, len(predictor.labels), k, variants, reporter)


class SklearnKind:
    name = "sklearn"

    def load(self, predictor, backend: str) -> None:
        from .tabular import load

        predictor._model = load(predictor.folder)

    def topk_variants(self, predictor, texts, k, variants, batch_size, reporter, frame):
        if frame is None:
            raise ModelError(f"{predictor.folder}: a products model needs the record fields, not only text")
        probs = predictor.probabilities(frame)
        idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        if reporter:
            reporter.advance(len(probs))
        return {name: (idx, np.take_along_axis(probs, idx, axis=1)) for name in variants}


class TransformerKind:
    """A transformers sequence classifier; optionally ONNX Runtime for requests of a few rows."""

    name = "transformer"

    def load(self, predictor, backend: str) -> None:
        predictor._tokenizer, predictor._model = load_classifier_files(predictor.folder / HF_SUBDIR)
        predictor._model.eval()
        if backend == "torch":
            from .device import place  # torch: loaded by the kinds that need it, not by a TF-IDF model

            place(predictor._model)  # on the GPU when there is one
            return
        from .onnx import OnnxClassifier

        files = predictor.manifest.get("onnx", {}).get("files", {})
        key = "int8" if backend == "onnx-int8" else "fp32"
        if key not in files:
            raise ModelError(f"{predictor.folder}: no {backend} export; run `mathtune export {predictor.folder} --onnx"
                             f"{' --int8' if key == 'int8' else ''}` first")
        predictor._onnx = OnnxClassifier(predictor.folder / files[key])
        predictor.backend = backend

    def topk_variants(self, predictor, texts, k, variants, batch_size, reporter, frame):
        from .scoring import score_variants, tokenize

        tokenizer = predictor._tokenizer
        # a model trained before calibration existed has none: its raw softmax, as it always showed
        temperature = float((predictor.manifest.get("calibration") or {}).get("temperature", 1.0))
        ids = tokenize(tokenizer, texts, predictor.manifest.get("max_length", 256))
        if predictor._onnx is not None and len(ids) <= predictor.onnx_max_rows:
            # ONNX Runtime (int8) wins for a few rows: 2x the single-request rate of PyTorch here; for larger
            # micro-batches PyTorch's bf16 matmuls (AMX) win, 2-3x, so those take the PyTorch path
            from .onnx import onnx_topk

            out = onnx_topk(predictor._onnx, ids, tokenizer.pad_token_id, batch_size, k, variants, temperature)
            if reporter:
                reporter.advance(len(ids))
            return out
        out, _ = score_variants(predictor._model, ids, tokenizer.pad_token_id, batch_size, k, variants=variants,
                                reporter=reporter, temperature=temperature)
        return out


def _more_kinds():
    from .embedding import EmbeddingKind
    from .ensemble import EnsembleKind

    return EnsembleKind(), EmbeddingKind()


for _kind in (TfidfKind(), SklearnKind(), TransformerKind(), *_more_kinds()):
    register_kind(_kind)
