"""A trained model folder's basics: the manifest and the transformers files, shared by every loader."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError

MANIFEST = "mathtune.json"
HF_SUBDIR = "model"


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        hint = " (a run killed mid-way leaves a .partial folder; run the same train command to resume)" \
            if folder.with_name(folder.name + ".partial").exists() else ""
        raise ModelError(f"{folder}: not a mathtune model folder (no {MANIFEST}){hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc}); the folder is damaged: train the model again or copy "
                         f"the folder again") from None
    missing = [k for k in ("task", "kind") if not isinstance(manifest, dict) or not isinstance(manifest.get(k), str)]
    if missing:
        raise ModelError(f"{path}: missing or wrong {', '.join(missing)}; the folder is damaged: train the model again")
    return manifest


def read_spec(folder: Path, name: str, what: str, keys: tuple[str, ...]) -> dict:
    """A model kind's JSON spec file (``ensemble.json``, ``embedding.json``) with ``keys`` present; a missing or
    damaged file is one clear error."""
    path = Path(folder) / name
    if not path.is_file():
        raise ModelError(f"{folder}: no {name}; is this {what} model folder?")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in keys if k not in spec]
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise ModelError(f"{path}: damaged ({exc!r}); train the model again") from None
    if missing:
        raise ModelError(f"{path}: damaged (no {', '.join(missing)}); train the model again")
    return spec


def load_classifier_files(path: Path, **kwargs):
    """Tokenizer and sequence classifier of a model folder's ``model/``; damaged files are one clear error."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # use_safetensors: never unpickle a .bin from a model folder.
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - truncated safetensors, a config with wrong types, a missing file
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ModelError(f"{path}: cannot load the model ({type(exc).__name__}: {first}); the files are damaged "
                         f"or incomplete: train the model again or copy the folder again") from None
    return tokenizer, model
