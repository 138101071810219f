"""A saved ensemble: member model folders under ``members/`` and how their probabilities are combined.

``ensemble.json`` names the members (in order), the method and, for averaging, the weights; a stacked ensemble
keeps its logistic regression as ``stack_coef.npy`` / ``stack_intercept.npy`` (read with ``allow_pickle=False``).
Each member is an ordinary model folder (its own manifest, task settings and files), loaded with the same
loaders as any other, so an ensemble can never load anything a single model could not. Fitting is in
train/ensemble.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..io import write_json
from .probs import masked_topk  # noqa: F401 (re-exported)
from .tfidf import _save_npy

SPEC_FILE = "ensemble.json"
MEMBERS = "members"
EPS = 1e-6


def member_probabilities(predictor, frame, texts: Sequence[str] | None = None, batch_size: int = 64) -> np.ndarray:
    """Probabilities over every label of a (member) model, rows in input order. Its inputs are built from
    ``frame`` with the member's own task settings (e.g. its prompt template) unless ``texts`` are given."""
    num_labels = len(predictor.labels)
    if texts is None:
        texts = predictor.task_object.inputs(frame, predictor.manifest.get("text_column", "Question"), "input")
    if predictor.kind == "tfidf":
        from .tfidf import class_probabilities

        return class_probabilities(predictor._model, list(texts), num_labels)
    if predictor.kind == "sklearn":
        return predictor.probabilities(frame)
    idx, prob = predictor.topk(texts, k=num_labels, batch_size=batch_size, frame=frame)
    full = np.zeros((len(texts), num_labels), dtype=np.float32)
    np.put_along_axis(full, idx, prob, axis=1)
    return full


def stack_features(probs: list[np.ndarray]) -> np.ndarray:
    return np.hstack([np.log(np.clip(p, EPS, 1.0)) for p in probs])


def combine(spec: dict, probs: list[np.ndarray], coef: np.ndarray | None = None,
            intercept: np.ndarray | None = None) -> np.ndarray:
    if spec["method"] == "stacking":
        scores = stack_features(probs) @ coef.T + intercept
        scores -= scores.max(axis=1, keepdims=True)
        out = np.exp(scores)
        return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)
    weights = np.asarray(spec.get("weights") or [1.0] * len(probs), dtype=np.float64)
    weights = weights / weights.sum()
    return sum(w * p for w, p in zip(weights, probs)).astype(np.float32)


def save_spec(folder: Path, spec: dict, coef: np.ndarray | None = None, intercept: np.ndarray | None = None) -> None:
    if coef is not None:
        _save_npy(folder / "stack_coef.npy", coef.astype(np.float32))
        _save_npy(folder / "stack_intercept.npy", intercept.astype(np.float32))
    write_json(folder / SPEC_FILE, {"format": "mathtune-ensemble/1", **spec})


class EnsembleKind:
    name = "ensemble"

    def load(self, predictor, backend: str) -> None:
        from .folder import read_spec

        folder = predictor.folder
        path = folder / SPEC_FILE
        spec = read_spec(folder, SPEC_FILE, "an ensemble", ("members", "method"))
        if not isinstance(spec["members"], list) or not spec["members"]:
            raise ModelError(f"{path}: damaged (members must be a list of folder names); train the ensemble again")
        names, method = [str(n) for n in spec["members"]], spec["method"]
        if method not in ("average", "stacking") or any("/" in n or "\\" in n or n.startswith(".") for n in names):
            raise ModelError(f"{path}: unknown method or member name; train the ensemble again")
        members = [predictor.load_member(folder / MEMBERS / n, backend) for n in names]
        for name, member in zip(names, members):
            if member.labels.names != predictor.labels.names:
                raise ModelError(f"{folder / MEMBERS / name}: its labels differ from the ensemble's; train the ensemble again")
        coef = intercept = None
        if method == "stacking":
            coef = np.load(folder / "stack_coef.npy", allow_pickle=False)
            intercept = np.load(folder / "stack_intercept.npy", allow_pickle=False)
        predictor._model = {"spec": spec, "members": members, "coef": coef, "intercept": intercept}

    def probabilities(self, predictor, texts, frame) -> np.ndarray:
        state = predictor._model
        if frame is None:
            raise ModelError(f"{predictor.folder}: an ensemble scores table rows (each member builds its own inputs)")
        probs = [member_probabilities(m, frame) for m in state["members"]]
        return combine(state["spec"], probs, state["coef"], state["intercept"])

    def topk_variants(self, predictor, texts, k, variants, batch_size, reporter, frame):
        probs = self.probabilities(predictor, texts, frame)
        if reporter:
            reporter.advance(len(probs))
        return masked_topk(probs, k, variants)
