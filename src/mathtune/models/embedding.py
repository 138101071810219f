"""Frozen sentence embeddings + a linear head (the SetFit-style baseline without contrastive tuning).

The encoder (any sentence-transformers folder or hub id; ``bundled:minilm``, ``bundled:mpnet``) is not trained:
texts are embedded once (mean pooling, normalized, bf16 autocast where the CPU supports it) and a multinomial
logistic regression is fitted on the vectors. The folder keeps ``embedding.json`` (the encoder, its max length)
and the head as ``.npy`` arrays read with ``allow_pickle=False``; a bundled encoder is referenced by name (it
resolves offline from its package), any other encoder is saved into ``encoder/`` so the folder is complete.
Fitting is in train/trainers.py (EmbeddingTrainer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..io import write_json
from .tfidf import _save_npy

SPEC_FILE = "embedding.json"
ENCODER_DIR = "encoder"
_CACHE: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # (encoder, max_length) -> text -> vector, per process


def load_encoder(name: str, max_length: int):
    from sentence_transformers import SentenceTransformer

    from .registry import resolve

    source = resolve(name)
    try:
        encoder = SentenceTransformer(source.path, device="cuda" if _cuda() else "cpu")
    except OSError as exc:
        raise ModelError(f"encoder {name!r}: cannot load it ({exc}); give a sentence-transformers folder, a hub id "
                         f"that is cached or reachable, or bundled:minilm / bundled:mpnet") from None
    encoder.max_seq_length = max_length
    return encoder


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def embed(encoder, texts: Sequence[str], key: tuple[str, int] | None = None, precision: str = "auto",
          batch_size: int = 32, reporter=None, store: bool = True) -> np.ndarray:
    """Normalized sentence vectors; texts already embedded in this process under ``key`` are not embedded again
    (the refit on train + validation, and an ensemble scoring its validation rows, reuse the training run's
    vectors). ``store=False`` reads that cache without adding to it (a server must not grow it per request)."""
    import torch

    from .device import autocast_context

    known = (_CACHE.setdefault(key, {}) if store else _CACHE.get(key, {})) if key else {}
    cache = known if store else dict()
    todo = list(dict.fromkeys(t for t in texts if t not in known and t not in cache))
    # longest first: batches of similar length pad less
    todo.sort(key=len, reverse=True)
    device = torch.device("cuda" if _cuda() else "cpu")
    for start in range(0, len(todo), batch_size * 8):
        chunk = todo[start:start + batch_size * 8]
        with autocast_context(precision, device)():
            vectors = encoder.encode(chunk, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True,
                                     normalize_embeddings=True)
        cache.update(zip(chunk, vectors.astype(np.float32)))
        if reporter:
            reporter.advance(len(chunk))
    return np.stack([known[t] if t in known else cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)


def head_probabilities(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, vectors: np.ndarray,
                       num_labels: int) -> np.ndarray:
    scores = vectors @ coef.T + intercept
    if scores.shape[1] == 1:
        scores = np.hstack([-scores, scores])
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    full = np.zeros((len(vectors), num_labels), dtype=np.float32)
    full[:, classes.astype(int)] = probs
    return full


def save(folder: Path, encoder_name: str, max_length: int, coef, intercept, classes, encoder=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stored = encoder_name
    if not encoder_name.startswith("bundled:") and encoder is not None:
        encoder.save(str(folder / ENCODER_DIR))
        stored = ENCODER_DIR
    for name, array in (("coef", coef), ("intercept", intercept), ("classes", classes)):
        _save_npy(folder / f"{name}.npy", np.asarray(array))
    write_json(folder / SPEC_FILE, {"format": "mathtune-embedding/1", "encoder": stored, "source": encoder_name,
                                    "max_length": int(max_length)})


class EmbeddingKind:
    name = "embedding"

    def load(self, predictor, backend: str) -> None:
        from .folder import read_spec

        folder = predictor.folder
        path = folder / SPEC_FILE
        spec = read_spec(folder, SPEC_FILE, "an embedding", ("encoder", "max_length"))
        try:
            encoder_ref, max_length = str(spec["encoder"]), int(spec["max_length"])
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{path}: damaged ({exc!r}); train the model again") from None
        if encoder_ref == ENCODER_DIR:
            encoder_ref = str(folder / ENCODER_DIR)
        elif not encoder_ref.startswith("bundled:"):
            raise ModelError(f"{path}: the encoder must be bundled or saved in the folder; train the model again")
        arrays = {n: np.load(folder / f"{n}.npy", allow_pickle=False) for n in ("coef", "intercept", "classes")}
        predictor._model = {"encoder": load_encoder(encoder_ref, max_length), "key": (encoder_ref, max_length), **arrays}

    def probabilities(self, predictor, texts) -> np.ndarray:
        m = predictor._model
        vectors = embed(m["encoder"], list(texts), m["key"], store=False)
        return head_probabilities(m["coef"], m["intercept"], m["classes"], vectors, len(predictor.labels))

    def topk_variants(self, predictor, texts, k, variants, batch_size, reporter, frame):
        from .probs import masked_topk

        probs = self.probabilities(predictor, texts)
        if reporter:
            reporter.advance(len(probs))
        return masked_topk(probs, k, variants)
