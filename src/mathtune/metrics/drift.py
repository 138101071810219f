"""Drift signals and divergences (the checks seed 004 describes), shared by training and serving.

At training time a model folder gets ``drift_reference.json``: for each signal, a reference sample and
quantile bins. The server keeps a sliding window of the same signals and compares:
PSI (population stability index), KS (two-sample Kolmogorov-Smirnov) and Jensen-Shannon divergence.

Signals per input: text length (characters), share of words unknown to the training vocabulary,
distance to the training centroid in a hashed character n-gram embedding, and the model's top-1
confidence; plus the distribution of predicted classes.
Evidently computes the same tests, but it pulls a large dependency tree into the server; these few
formulas are written out here instead (scipy provides KS and Jensen-Shannon).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

CONTINUOUS = ("text_length", "unknown_word_share", "centroid_distance", "confidence")
THRESHOLDS = {"psi": 0.2, "ks_pvalue": 0.01, "js": 0.1}
_WORD = re.compile(r"[a-z]+")
_EPS = 1e-4
EMBED_DIM = 2048


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _embedder():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=(3, 4), n_features=EMBED_DIM, alternate_sign=False, norm="l2")


def embed(texts: Sequence[str]) -> np.ndarray:
    return _embedder().transform(list(texts)).toarray().astype(np.float32)


class SignalExtractor:
    """Turns raw inputs into the per-row drift signals, given the training vocabulary and centroid."""

    def __init__(self, vocabulary: set[str], centroid: np.ndarray) -> None:
        self.vocabulary = vocabulary
        self.centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)

    @classmethod
    def fit(cls, texts: Sequence[str], max_words: int = 30000) -> SignalExtractor:
        counts = Counter(w for t in texts for w in _words(t))
        vocabulary = {w for w, _ in counts.most_common(max_words)}
        centroid = embed(texts).mean(axis=0) if len(texts) else np.zeros(EMBED_DIM, dtype=np.float32)
        return cls(vocabulary, centroid)

    def signals(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        lengths = np.array([len(t) for t in texts], dtype=float)
        unknown = []
        for text in texts:
            words = _words(text)
            unknown.append(sum(w not in self.vocabulary for w in words) / len(words) if words else 0.0)
        distance = 1.0 - embed(texts) @ self.centroid if len(texts) else np.zeros(0)
        return {"text_length": lengths, "unknown_word_share": np.array(unknown), "centroid_distance": distance}


# A question is unlike those a model learned from when a signal is past this quantile of the validation questions'
UNFAMILIAR_QUANTILE = 0.99
# Only the unknown-word share: the distance from the training centroid marked short in-distribution questions
# ("Solve for x: 2x+3=11" on the math-topics model) as unfamiliar, so it is not used for one question.
UNFAMILIAR_REASONS = {"unknown_word_share": "many of its words never appear in the questions it learned from"}


class Familiarity:
    """Whether one input is like those a model learned from, by the drift reference's own signals: past the
    UNFAMILIAR_QUANTILE of the validation inputs' unknown-word share, the model is out of its depth and a confident
    probability from it means little. It catches text far from the training questions (a poem asked of a topic
    model); a word problem in familiar words that the model misreads is not caught by it."""

    def __init__(self, extractor: SignalExtractor, reference: dict) -> None:
        self.extractor = extractor
        self.limits = {name: float(np.quantile(reference["signals"][name]["sample"], UNFAMILIAR_QUANTILE))
                       for name in UNFAMILIAR_REASONS if reference["signals"].get(name, {}).get("sample")}

    def reasons(self, texts: Sequence[str]) -> list[str | None]:
        """For each text, why it is unlike the training inputs, or None when it is like them."""
        signals = self.extractor.signals(texts)
        return [next((UNFAMILIAR_REASONS[name] for name, limit in self.limits.items()
                      if signals[name][i] > limit + 1e-9), None) for i in range(len(texts))]


def quantile_bins(sample: np.ndarray, bins: int = 10) -> list[float]:
    """Inner deciles plus the reference maximum, so values beyond the reference range get a bin of their own
    (and a constant reference, such as no unknown words at all, still separates from anything else)."""
    if not len(sample):
        return []
    inner = np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(np.append(inner, np.max(sample))).tolist()


def proportions(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    # bin = number of edges strictly below the value
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def js_divergence(expected: np.ndarray, actual: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(np.clip(expected, _EPS, None), np.clip(actual, _EPS, None), base=2) ** 2)


def build_reference(train_texts: Sequence[str], texts: Sequence[str], confidences: Sequence[float],
                    predicted: Sequence[int], num_labels: int, sample_size: int = 2000, seed: int = 0) -> dict:
    """The reference a model folder keeps: the training vocabulary and centroid, and per-signal samples and bins
    of ``texts`` (the validation split: inputs the model did not train on, like those it will serve)."""
    extractor = SignalExtractor.fit(train_texts)
    values = extractor.signals(texts)
    values["confidence"] = np.asarray(confidences, dtype=float)
    rng = np.random.default_rng(seed)
    reference = {"signals": {}, "vocabulary": sorted(extractor.vocabulary), "centroid": extractor.centroid.round(6).tolist()}
    for name in CONTINUOUS:
        sample = values[name]
        if len(sample) > sample_size:
            sample = rng.choice(sample, sample_size, replace=False)
        edges = quantile_bins(values[name])
        reference["signals"][name] = {"sample": np.round(sample, 6).tolist(), "edges": edges,
                                      "proportions": proportions(values[name], edges).tolist()}
    counts = np.bincount(np.asarray(predicted, dtype=int), minlength=num_labels)
    reference["signals"]["predicted_class"] = {"proportions": (counts / max(counts.sum(), 1)).tolist()}
    return reference


def compare(reference: dict, window: dict[str, np.ndarray], num_labels: int) -> dict:
    """PSI, KS and Jensen-Shannon of the window against the reference, per signal, with drift flags."""
    from scipy.stats import ks_2samp

    out = {}
    for name in CONTINUOUS:
        ref = reference["signals"][name]
        current = np.asarray(window.get(name, []), dtype=float)
        if not len(current):
            continue
        expected, actual = np.asarray(ref["proportions"]), proportions(current, ref["edges"])
        ks = ks_2samp(np.asarray(ref["sample"]), current)
        entry = {"psi": psi(expected, actual), "ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                 "js": js_divergence(expected, actual), "window_mean": float(current.mean()),
                 "reference_mean": float(np.mean(ref["sample"]))}
        entry["drift"] = entry["psi"] >= THRESHOLDS["psi"] or entry["js"] >= THRESHOLDS["js"]
        out[name] = entry
    predicted = np.asarray(window.get("predicted_class", []), dtype=int)
    if len(predicted):
        expected = np.asarray(reference["signals"]["predicted_class"]["proportions"])
        actual = np.bincount(predicted, minlength=num_labels) / len(predicted)
        entry = {"psi": psi(expected, actual), "js": js_divergence(expected, actual)}
        entry["drift"] = entry["psi"] >= THRESHOLDS["psi"] or entry["js"] >= THRESHOLDS["js"]
        out["predicted_class"] = entry
    return out
