"""Classical baseline: word + character TF-IDF with a linear model (fitting; the saved form is models/tfidf.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from ..config import TfidfConfig
from ..metrics.calibration import fit_temperature
from ..models.tfidf import MODEL_FILE, TfidfLinearModel, class_probabilities, load, save  # noqa: F401

# LaTeX commands (\frac, \int), words, and the operator characters that tell topics apart.
TOKEN_PATTERN = r"(?u)\\[A-Za-z]+|\b\w+\b|[\\^=+\-*/()<>|!]"


def _vectorizers(cfg: TfidfConfig) -> list[TfidfVectorizer]:
    common = dict(min_df=cfg.min_df, max_features=cfg.max_features, sublinear_tf=True, lowercase=True, dtype=np.float32)
    return [
        TfidfVectorizer(analyzer="word", ngram_range=tuple(cfg.word_ngrams), token_pattern=TOKEN_PATTERN, **common),
        TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(cfg.char_ngrams), **common),
    ]


def fit_tfidf(texts: Sequence[str], labels: Sequence[int], cfg: TfidfConfig, seed: int = 0) -> TfidfLinearModel:
    vectorizers = _vectorizers(cfg)
    features = hstack([v.fit_transform(list(texts)) for v in vectorizers]).tocsr()
    if cfg.classifier == "logreg":
        clf = LogisticRegression(C=cfg.C, max_iter=3000, class_weight=cfg.class_weight, random_state=seed)
    else:
        clf = LinearSVC(C=cfg.C, class_weight=cfg.class_weight, random_state=seed)
    y = np.asarray(labels)
    # logistic regression's softmax is already fitted as a probability; the SVM's margins are not
    temperature = _calibration_temperature(clf, features, y, cfg, seed) if cfg.calibrate and cfg.classifier == "linear_svc" else 1.0
    clf.fit(features, y)
    return TfidfLinearModel(vectorizers, np.asarray(clf.coef_, dtype=np.float32), np.asarray(clf.intercept_, dtype=np.float32),
                            np.asarray(clf.classes_), cfg.classifier, temperature)


def _calibration_temperature(clf, features, y: np.ndarray, cfg: TfidfConfig, seed: int) -> float:
    """Temperature fitted on out-of-fold linear scores (each row scored by a model that never saw it)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    folds = min(cfg.calibration_folds, int(counts[counts > 0].min()))
    classes = np.unique(y)
    if folds < 2 or len(classes) < 2:
        return 1.0
    scores = np.zeros((len(y), len(classes)), dtype=np.float64)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, y):
        fold = clone(clf).fit(features[train_idx], y[train_idx])
        decision = fold.decision_function(features[test_idx])
        if decision.ndim == 1:
            decision = np.stack([-decision, decision], axis=1)
        scores[np.ix_(test_idx, np.searchsorted(classes, fold.classes_))] = decision
    return fit_temperature(scores, np.searchsorted(classes, y))


