"""A saved products pipeline: a skops file, never a pickle. Loading trusts skops' own default list
(scikit-learn estimators, NumPy arrays, plain containers) plus exactly the types in ``ALLOWED_TYPES``, which are
the ones our pipelines contain; anything else the file names (a ``builtins`` function such as ``exec``,
``os.system``, any other module) is refused before a single object is built. Fitting is in train/tabular.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ModelError
from ..io import atomic_path

MODEL_FILE = "pipeline.skops"
# Types outside skops' default trust that our pipelines contain (random forest, linear, gradient boosting; SMOTE).
# Exact names, never prefixes, and never what the file itself lists: a file can name any callable.
ALLOWED_TYPES = frozenset({
    "imblearn.over_sampling._smote.base.SMOTE",
    "imblearn.pipeline.Pipeline",
    "numpy.dtype",
    # sparse matrices (fitted one-hot / TF-IDF state, e.g. stored SMOTE neighbours); read by skops with
    # scipy.sparse.load_npz, no pickle
    "scipy.sparse._csr.csr_matrix", "scipy.sparse._csc.csc_matrix", "scipy.sparse._csr.csr_array",
    "scipy.sparse._csc.csc_array",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})



def full_probabilities(pipeline, features: pd.DataFrame, num_labels: int) -> np.ndarray:
    probs = pipeline.predict_proba(features)
    full = np.zeros((len(features), num_labels), dtype=np.float32)
    full[:, pipeline.classes_.astype(int)] = probs
    return full


def save(pipeline, folder: Path) -> Path:
    import skops.io as sio

    path = folder / MODEL_FILE
    with atomic_path(path) as tmp:
        sio.dump(pipeline, tmp)
    return path


def load(folder: Path):
    import skops.io as sio

    path = folder / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {MODEL_FILE}; is this a products model folder?")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip, no schema, malformed JSON: a damaged or foreign file
        raise ModelError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc}); retrain the model "
                         f"or copy the folder again") from None
    refused = sorted(t for t in untrusted if t not in ALLOWED_TYPES)
    if refused:
        raise ModelError(f"{path}: mathtune refuses to load types it never saves "
                         f"({', '.join(refused[:5])}); it may have been tampered with. Only load model folders you "
                         f"trained yourself or got from someone you trust")
    try:
        return sio.load(path, trusted=[t for t in untrusted if t in ALLOWED_TYPES])
    except Exception as exc:
        raise ModelError(f"{path}: cannot load the pipeline ({type(exc).__name__}: {exc}); retrain the model") from None
