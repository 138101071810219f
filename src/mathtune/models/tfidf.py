"""A saved TF-IDF + linear model: data, not code. Vocabularies and settings in JSON, idf vectors and the linear
weights as ``.npy`` arrays read with ``allow_pickle=False``, so loading a model file cannot run code, and it is
fast (skops took minutes on a 500k-term vocabulary; this takes about a second). Fitting is in train/classical.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer

from ..errors import ModelError
from ..io import atomic_path, write_json

MODEL_FILE = "tfidf.json"
_VECTORIZER_KEYS = ("analyzer", "ngram_range", "lowercase", "sublinear_tf", "token_pattern", "norm", "use_idf", "smooth_idf")


class TfidfLinearModel:
    """Word and char TF-IDF features -> linear scores -> softmax probabilities."""

    def __init__(self, vectorizers: list[TfidfVectorizer], coef: np.ndarray, intercept: np.ndarray,
                 classes: np.ndarray, kind: str, temperature: float = 1.0) -> None:
        self.vectorizers = vectorizers
        self.coef = coef
        self.intercept = intercept
        self.classes = classes
        self.kind = kind
        self.temperature = temperature  # scores are divided by it before the softmax (calibration)

    def features(self, texts: Sequence[str]):
        return hstack([v.transform(list(texts)) for v in self.vectorizers]).tocsr()

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        scores = self.features(texts) @ self.coef.T + self.intercept
        if scores.shape[1] == 1:  # binary models store one row of weights
            scores = np.hstack([-scores, scores])
        return np.asarray(scores)


def class_probabilities(model: TfidfLinearModel, texts: Sequence[str], num_labels: int) -> np.ndarray:
    """Probabilities over all label ids (softmax of the linear scores; classes absent from training get 0).
    For logistic regression this equals scikit-learn's multinomial predict_proba."""
    scores = model.decision(texts) / getattr(model, "temperature", 1.0)
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    full = np.zeros((len(texts), num_labels), dtype=np.float32)
    full[:, model.classes.astype(int)] = probs
    return full


def save(model: TfidfLinearModel, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"format": "mathtune-tfidf-linear/1", "classifier": model.kind, "temperature": float(model.temperature),
            "vectorizers": []}
    for i, vec in enumerate(model.vectorizers):
        params = {k: vec.get_params()[k] for k in _VECTORIZER_KEYS}
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
        spec["vectorizers"].append({"params": params, "vocabulary": vocab})
        _save_npy(folder / f"idf_{i}.npy", vec.idf_.astype(np.float32))
    _save_npy(folder / "coef.npy", model.coef)
    _save_npy(folder / "intercept.npy", model.intercept)
    _save_npy(folder / "classes.npy", model.classes.astype(np.int64))
    write_json(folder / MODEL_FILE, spec)
    return folder / MODEL_FILE


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)


def load(folder: Path) -> TfidfLinearModel:
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {MODEL_FILE}; is this a TF-IDF model folder?")
    spec = json.loads(path.read_text(encoding="utf-8"))
    vectorizers = []
    for i, entry in enumerate(spec["vectorizers"]):
        params = dict(entry["params"])
        params["ngram_range"] = tuple(params["ngram_range"])
        vec = TfidfVectorizer(dtype=np.float32, **params)
        vec.vocabulary_ = {term: j for j, term in enumerate(entry["vocabulary"])}
        vec.idf_ = np.load(folder / f"idf_{i}.npy", allow_pickle=False)
        vectorizers.append(vec)
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ("coef", "intercept", "classes")}
    return TfidfLinearModel(vectorizers, arrays["coef"], arrays["intercept"], arrays["classes"], spec["classifier"],
                            float(spec.get("temperature", 1.0)))


def tfidf_topk_variants(model, texts: Sequence[str], num_labels: int, k: int, variants: dict,
                        reporter=None, chunk: int = 1024) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Top-k ids and probabilities under each candidate mask, in chunks of rows (bounded memory)."""
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


