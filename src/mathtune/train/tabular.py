"""Products: a scikit-learn pipeline over text, categorical and numeric fields, with SMOTE inside.

ColumnTransformer (TF-IDF for text, one-hot for categoricals, median imputation + scaling for numbers)
-> SMOTE (imbalanced-learn; inside the pipeline, so it only ever sees training folds) -> RandomForest,
or a linear or gradient-boosting option. Saved and loaded by models/tabular.py (skops, an explicit allow-list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import ProductsConfig
from ..errors import ModelError
from ..models.tabular import ALLOWED_TYPES, MODEL_FILE, full_probabilities, load, save  # noqa: F401 (re-exported)


def build_pipeline(cfg: ProductsConfig, features: pd.DataFrame, min_class_count: int, seed: int = 0):
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in features.columns if c.startswith("cat_")]
    nums = [c for c in features.columns if c.startswith(("num_", "count_"))]
    parts = [("text", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=cfg.max_text_features), "text")]
    if cats:
        parts.append(("categorical", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3), cats))
    if nums:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), nums))
    steps = [("features", ColumnTransformer(parts, sparse_threshold=1.0))]
    if cfg.classifier == "gradient_boosting":  # HistGradientBoosting needs dense input: compress the text first
        vocabulary = len(TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=cfg.max_text_features)
                         .fit(features["text"]).vocabulary_) if len(features) > 1 else 1
        width = vocabulary  # a lower bound of the feature count (one-hot and numbers only add to it)
        steps.append(("svd", TruncatedSVD(n_components=max(1, min(128, width - 1)), random_state=seed)))
    if cfg.smote and min_class_count > 1:
        steps.append(("smote", SMOTE(k_neighbors=min(cfg.smote_k_neighbors, min_class_count - 1), random_state=seed)))
    if cfg.classifier == "random_forest":
        clf = RandomForestClassifier(n_estimators=cfg.n_estimators, max_depth=cfg.max_depth, min_samples_split=cfg.min_samples_split,
                                     n_jobs=-1, random_state=seed)
    elif cfg.classifier == "linear":
        clf = LogisticRegression(C=cfg.C, max_iter=3000, random_state=seed)
    else:
        clf = HistGradientBoostingClassifier(max_iter=cfg.n_estimators, random_state=seed)
    steps.append(("clf", clf))
    return Pipeline(steps)


def cross_validated_probabilities(cfg: ProductsConfig, features: pd.DataFrame, y: np.ndarray, num_labels: int,
                                  seed: int = 0, progress=None) -> np.ndarray:
    """Out-of-fold probabilities: each fold's pipeline (SMOTE included) is fitted on the other folds only."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=num_labels)
    folds = min(cfg.cv_folds, int(counts[counts > 0].min()))
    if folds < 2:
        raise ModelError("products.cv_folds: a class has a single training row; cross-validation needs 2 per class")
    oof = np.zeros((len(y), num_labels), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(features, y):
        fold_counts = np.bincount(y[train_idx])
        pipeline = build_pipeline(cfg, features.iloc[train_idx], int(fold_counts[fold_counts > 0].min()), seed)
        pipeline.fit(features.iloc[train_idx], y[train_idx])
        oof[test_idx] = full_probabilities(pipeline, features.iloc[test_idx], num_labels)
        if progress:
            progress(1)
    return oof


def feature_importances(pipeline, top: int = 25) -> list[tuple[str, float]]:
    names = pipeline.named_steps["features"].get_feature_names_out()
    clf = pipeline.named_steps["clf"]
    if "svd" in pipeline.named_steps:
        return []
    if hasattr(clf, "feature_importances_"):
        values = clf.feature_importances_
    elif hasattr(clf, "coef_"):
        values = np.abs(clf.coef_).mean(axis=0)
    else:
        return []
    order = np.argsort(-values)[:top]
    return [(str(names[i]), float(values[i])) for i in order]


