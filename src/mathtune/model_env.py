"""What a logged MLflow model needs to run anywhere MLflow runs models: its own copy of mathtune's code (MLflow's
``code_paths``: no index has to hold mathtune) and the packages its kind imports, pinned to the versions it was
trained with, each one a package an index has. A TF-IDF model names scikit-learn, not torch.

Why code_paths and not a wheel or MLflow's own sklearn flavour: the model folder's scoring (labels, candidate
masks, the outputs of models/outputs.py, spreadsheet-safe text) is mathtune's, for every kind alike; carrying the
code keeps one pyfunc for all kinds and gives every platform (``mlflow models serve/predict --env-manager uv``,
``build-docker``, Azure ML, Databricks, ``spark_udf(env_manager="uv")``) the same answers as ``mathtune predict``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
from pathlib import Path

from .errors import MathtuneError

# What each model kind imports when it is loaded and scored (beyond Python's own library), by distribution name.
BASE = ("numpy", "pandas", "scipy", "scikit-learn", "joblib", "pydantic", "PyYAML")
TORCH = ("torch", "transformers", "tokenizers", "safetensors", "peft", "huggingface-hub")
BY_KIND: dict[str, tuple[str, ...]] = {
    "tfidf": (),
    "sklearn": ("imbalanced-learn",),
    "transformer": TORCH,
    "embedding": (*TORCH, "sentence-transformers"),
    "ensemble": (*TORCH, "sentence-transformers"),
    "generator": (*TORCH, "sympy", "mpmath", "math-verify"),
}


class UnresolvableRequirement(MathtuneError):
    """A package the model needs that no index would give back: named with why, when the model is logged."""


def _pinned(name: str) -> str:
    """``name==version`` as installed here, or UnresolvableRequirement saying why a platform could not install it."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise UnresolvableRequirement(f"the model needs {name}, which is not installed here, so its version cannot be "
                                      f"pinned: pip install {name} and log it again") from None
    if str(getattr(dist, "_path", "")).endswith(".egg-info"):  # a source tree's metadata (setup.py develop, -e)
        raise UnresolvableRequirement(f"the model needs {name}, found here as a source checkout "
                                      f"({getattr(dist, '_path', '')}), which no package index has; install {name} "
                                      "from an index and log the model again")
    direct = dist.read_text("direct_url.json")
    if direct:  # installed from a folder, a file or a VCS checkout: an index has some other build, or none
        origin = json.loads(direct).get("url", "a local path")
        if not origin.startswith("file:///opt/wheels"):
            raise UnresolvableRequirement(f"the model needs {name}, installed here from {origin}, which no package "
                                          f"index has; install {name} from an index and log the model again")
    version = dist.version.split("+")[0]  # a local build (torch 2.13.0+cpu) is the index's release of that version
    return f"{dist.metadata['Name']}=={version}"


def requirements(model_dir: str | Path) -> list[str]:
    """The pinned packages a model folder needs to be loaded and scored, for its kind."""
    from .models.folder import read_manifest

    manifest = read_manifest(Path(model_dir))
    kind = manifest.get("kind", "")
    if kind not in BY_KIND:
        raise UnresolvableRequirement(f"{model_dir}: model kind {kind!r} has no requirements listed in "
                                      "mathtune/model_env.py BY_KIND; add it there")
    extra = list(BY_KIND[kind])
    if kind == "generator" and manifest.get("gguf"):
        extra.append("xllamacpp")
    return [_pinned(name) for name in dict.fromkeys([*BASE, *extra])]


def code_path() -> str:
    """mathtune's own package folder, carried inside the logged model (MLflow puts it on the path at load)."""
    return str(Path(__file__).resolve().parent)
