"""Whether a classifier's percentages mean what they say: when it says 90%, is it right about 9 times in 10?

``expected_calibration_error`` (ECE, top-1 confidence in equal-width bins) measures it; ``fit_temperature`` fixes
it the way Guo et al. (2017) do, one temperature T dividing the scores before the softmax, fitted on the
validation split. One scalar never changes which label comes first, only how sure the model sounds.
``calibrate`` fits T on validation logits and says honestly what it gained: the ECE after is cross-fitted (T
fitted on one half of the rows, measured on the other), not measured on the rows that chose T.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BINS = 10
SURE = 0.9  # "when it said it was 90% sure or more": the Models tab's figure of how far its percentages hold


def expected_calibration_error(confidence, correct, bins: int = BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the rows in each bin."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if not len(confidence):
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        rows = which == b
        total += rows.sum() * abs(correct[rows].mean() - confidence[rows].mean())
    return float(total / len(confidence))


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    rows: int
    confidence: float   # mean top-1 probability of the rows in the bin
    accuracy: float     # share of them whose top-1 label was right


def reliability(confidence, correct, bins: int = BINS) -> list[ReliabilityBin]:
    """The bins of a reliability diagram (empty bins left out)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [ReliabilityBin(b / bins, (b + 1) / bins, int((which == b).sum()), float(confidence[which == b].mean()),
                           float(correct[which == b].mean())) for b in range(bins) if (which == b).any()]


def when_sure(confidence, correct, threshold: float = SURE) -> dict:
    """How often the top answer was right among the rows where it was said with at least ``threshold``."""
    confidence = np.asarray(confidence, dtype=float)
    sure = confidence >= threshold
    return {"threshold": threshold, "rows": int(sure.sum()), "right": int(np.asarray(correct)[sure].sum())}


def top1_outcomes(top_idx, top_prob, labels) -> tuple[np.ndarray, np.ndarray]:
    """The top answer's probability and whether it was right, for the rows whose label is known (id >= 0)."""
    labels = np.asarray(labels)
    known = labels >= 0
    return np.asarray(top_prob)[known, 0], np.asarray(top_idx)[known, 0] == labels[known]


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(scores / T) (temperature scaling,
    Guo et al. 2017): one scalar, so the ranking of labels never changes, only how sure the probabilities are."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        z = scores / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    best = minimize_scalar(nll, bounds=(-6.0, 4.0), method="bounded")
    return float(np.exp(best.x))


@dataclass(frozen=True)
class Calibration:
    """What a model folder keeps (``calibration`` in mathtune.json): the temperature its scores are divided by,
    and the validation ECE before and after (cross-fitted), so a user sees what temperature scaling bought."""

    temperature: float
    ece_before: float
    ece_after: float
    rows: int
    method: str = "temperature scaling on the validation split (ECE after: cross-fitted on two halves)"

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _ece_at(scores: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = softmax(scores, temperature)
    return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels)


def calibrate(scores: np.ndarray, labels, seed: int = 0) -> Calibration:
    """Temperature scaling of validation ``scores`` (rows x classes, before the softmax) against their true
    ``labels`` (ids; rows with a negative id, unknown, are left out)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    known = labels >= 0
    scores, labels = scores[known], labels[known]
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        before = _ece_at(scores, labels, 1.0) if len(labels) else 0.0
        return Calibration(1.0, before, before, int(len(labels)))
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = order[: len(order) // 2], order[len(order) // 2:]
    crossed = 0.0
    for fit_rows, test_rows in (halves, halves[::-1]):
        t = fit_temperature(scores[fit_rows], labels[fit_rows])
        crossed += len(test_rows) * _ece_at(scores[test_rows], labels[test_rows], t)
    return Calibration(fit_temperature(scores, labels), _ece_at(scores, labels, 1.0), crossed / len(labels),
                       int(len(labels)))
