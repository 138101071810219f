"""Classical baseline: word + character TF-IDF with a linear model (fitting; the saved form is models/tfidf.py)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from ..config import TfidfConfig
from ..models.tfidf import MODEL_FILE, TfidfLinearModel, class_probabilities, load, save  # noqa: F401 (re-exported)

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
    clf.fit(features, np.asarray(labels))
    return TfidfLinearModel(vectorizers, np.asarray(clf.coef_, dtype=np.float32), np.asarray(clf.intercept_, dtype=np.float32),
                            np.asarray(clf.classes_), cfg.classifier)


