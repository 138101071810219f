"""Model folders and checkpoints are data: crafted files that would run code are refused, and nothing runs.

Each payload is first shown to be live (plain skops / torch loading runs it), so the tests cannot pass vacuously.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mathtune.errors import ModelError
from mathtune.models.saved import load_predictor
from mathtune.train import tabular
from mathtune.train.loop import read_checkpoint


def _json_node(value) -> dict:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(value),
            "is_json": True, "__id__": id(value)}


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def _payloads(marker: Path) -> dict[str, dict]:
    """Several node kinds, each of which would run code or reach a dangerous callable."""
    code = _code(marker)
    args = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": [_json_node(code)],
            "__id__": 1}
    wrap = lambda node: {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",  # noqa: E731
                         "content": {"x": node}, "key_types": {"__class__": "list", "__module__": "builtins",
                                                                "__loader__": "ListNode",
                                                                "content": [{"__class__": "str", "__module__": "builtins",
                                                                             "__loader__": "TypeNode", "__id__": 2}],
                                                                "__id__": 3}, "__id__": 4}
    return {
        "reduce-exec": {"__class__": "exec", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
                        "content": args, "__id__": 5},
        "reduce-eval-nested": wrap({"__class__": "eval", "__module__": "builtins",
                                    "__loader__": "ConstructorFromReduceNode", "content": args, "__id__": 6}),
        "function-os-system": wrap({"__class__": "system", "__module__": "os", "__loader__": "FunctionNode", "__id__": 7}),
        "type-subprocess": wrap({"__class__": "Popen", "__module__": "subprocess", "__loader__": "TypeNode", "__id__": 8}),
        "object-pathlib": wrap({"__class__": "PosixPath", "__module__": "pathlib", "__loader__": "ObjectNode",
                                "content": _json_node("/etc/passwd"), "__id__": 9}),
    }


def _write_skops(path: Path, schema: dict) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("schema.json", json.dumps({**schema, "protocol": 2, "_skops_version": "0.16.0"}))


def _products_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "products-model"
    folder.mkdir()
    (folder / "mathtune.json").write_text(json.dumps({
        "task": "products", "kind": "sklearn", "labels": {"values": ["a", "b"], "names": ["a", "b"]},
        "task_settings": {}}))
    return folder


def test_skops_exec_payload_is_live_without_our_allow_list(tmp_path):
    """The payload really runs code when a loader trusts what the file lists (the old behaviour)."""
    marker = tmp_path / "ran"
    path = tmp_path / "p.skops"
    _write_skops(path, _payloads(marker)["reduce-exec"])
    script = ("import skops.io as sio, sys; p = sys.argv[1]; "
              "sio.load(p, trusted=sio.get_untrusted_types(file=p))")
    subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True)
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("kind", list(_payloads(Path("x"))))
def test_crafted_skops_files_are_refused_and_run_nothing(tmp_path, kind):
    marker = tmp_path / "ran"
    folder = _products_folder(tmp_path)
    _write_skops(folder / tabular.MODEL_FILE, _payloads(marker)[kind])
    with pytest.raises(ModelError) as err:
        load_predictor(folder)
    message = str(err.value)
    assert str(folder / tabular.MODEL_FILE) in message and "refuses" in message
    bad_type = _payloads(marker)[kind]
    bad_type = bad_type["content"]["x"] if bad_type["__loader__"] == "DictNode" else bad_type
    assert f"{bad_type['__module__']}.{bad_type['__class__']}" in message
    assert not marker.exists()


def test_damaged_skops_file_is_a_clear_error(tmp_path):
    folder = _products_folder(tmp_path)
    (folder / tabular.MODEL_FILE).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="not a readable skops file"):
        load_predictor(folder)


def test_the_allow_list_is_exactly_what_our_pipelines_need(tmp_path):
    """Every classifier option saves and loads under the allow-list, which names data types only."""
    import skops.io as sio

    from mathtune.config import ProductsConfig

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"text": [f"w{i % 7} t{i % 5}" for i in range(60)], "cat_b": [f"b{i % 4}" for i in range(60)],
                          "num_p": rng.normal(size=60)})
    y = np.arange(60) % 3
    seen = set()
    for classifier in ("random_forest", "linear", "gradient_boosting"):
        pipeline = tabular.build_pipeline(ProductsConfig(classifier=classifier, n_estimators=5), frame, 20)
        pipeline.fit(frame, y)
        folder = tmp_path / classifier
        folder.mkdir()
        tabular.save(pipeline, folder)
        seen |= set(sio.get_untrusted_types(file=folder / tabular.MODEL_FILE))
        assert (tabular.load(folder).predict(frame) == pipeline.predict(frame)).all()
    assert seen <= set(tabular.ALLOWED_TYPES)
    assert all(t.startswith(("sklearn.", "imblearn.", "numpy.", "scipy.sparse.")) for t in tabular.ALLOWED_TYPES)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_pickled_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoints" / "last.pt"
    path.parent.mkdir()
    torch.save({"format": 2, "model": {}, "progress": _Exploit(str(marker))}, path)
    # live: the pickle runs code under an unsafe load
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"],
                   capture_output=True)
    assert marker.read_text() == "pwned"
    marker.unlink()
    with pytest.raises(ModelError, match="refused to resume") as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and "Delete" in str(err.value)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": 2, "model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ModelError, match="refused to resume"):
        read_checkpoint(path)


def test_streamed_reading_of_crafted_data_files(tmp_path):
    """A gzip bomb is read chunk by chunk (the first chunk arrives without inflating the rest); a damaged Parquet
    file and a CSV with an unterminated quote are clear errors that name the file."""
    import gzip
    import resource

    from mathtune.data.readers import iter_table
    from mathtune.errors import DataError

    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(b"Question\n")
        line = b"What is 1 + 1?\n" * 65536
        for _ in range(400):  # ~390 MB of text in a file of about 1 MB
            out.write(line)
    assert bomb.stat().st_size < 3_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    first = next(iter(iter_table(bomb, chunk_rows=1000)))
    assert len(first) == 1000 and first["Question"][0] == "What is 1 + 1?"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: far less than the inflated file

    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1" + b"\x00garbage" * 100 + b"PAR1")
    with pytest.raises(DataError, match="damaged.parquet: cannot read as Parquet"):
        list(iter_table(damaged))
    quote = tmp_path / "quote.csv"
    quote.write_text('Question\n"never closed\nsecond line\n')
    with pytest.raises(DataError, match="quote.csv: not a valid CSV file"):
        list(iter_table(quote))
