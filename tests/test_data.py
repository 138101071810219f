import gzip
import json

import pandas as pd
import pytest

from mathtune.data.inspect import inspect_file
from mathtune.data.readers import check_nonempty, decode_bytes_literal, read_table
from mathtune.data.split import stratified_split
from mathtune.errors import DataError
from mathtune.paths import resolve_data_path
from mathtune.tasks import TOPIC_NAMES, LabelMap


def test_csv_keeps_na_as_text(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('Question,label\n"multi\nline",NA\n')
    frame = read_table(path)
    assert frame.loc[0, "label"] == "NA"
    assert frame.loc[0, "Question"] == "multi\nline"


def test_jsonl_gz_and_parquet(tmp_path):
    rows = [{"question": "1+1?", "answer": 2}, {"question": "2+2?", "answer": 4}]
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    assert read_table(gz)["answer"].tolist() == ["2", "4"]
    pq = tmp_path / "a.parquet"
    pd.DataFrame(rows).to_parquet(pq)
    assert read_table(pq)["question"].tolist() == ["1+1?", "2+2?"]


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match="line 2"):
        read_table(path)


def test_non_utf8_names_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"Question,label\nfine,0\ncaf\xe9 au lait,1\n")
    with pytest.raises(DataError) as err:
        read_table(path)
    assert "bad.csv" in str(err.value) and "line 3" in str(err.value) and "UTF-8" in str(err.value)
    assert read_table(path, encoding="latin-1").loc[1, "Question"] == "café au lait"


def test_missing_file():
    with pytest.raises(DataError, match="not found"):
        resolve_data_path("does/not/exist.csv")


def test_bytes_literal_rows_are_decoded():
    assert decode_bytes_literal("b'Solve 0 = -i - 91*i for i.\\n'") == "Solve 0 = -i - 91*i for i."
    assert decode_bytes_literal('b"x\\xc3\\xa9"') == "xé"
    assert decode_bytes_literal("bring 3 apples") == "bring 3 apples"
    assert decode_bytes_literal("b'unterminated") == "b'unterminated"


def test_empty_text_rows_are_named():
    with pytest.raises(DataError, match="data row 2, 4"):
        check_nonempty(["a", " ", "b", ""], "Question", "f.csv")


def test_stratified_split_keeps_singletons_in_train():
    labels = ["a"] * 10 + ["b"] * 10 + ["c"]
    train, val = stratified_split(labels, 0.2, seed=0)
    assert 20 in train and 20 not in val
    assert sorted(list(train) + list(val)) == list(range(21))
    assert sum(labels[i] == "a" for i in val) == 2 and sum(labels[i] == "b" for i in val) == 2
    assert (train == stratified_split(labels, 0.2, seed=0)[0]).all()


def test_label_map_topic_ids_get_topic_names():
    labels = LabelMap.infer(["0", "3", "7"], TOPIC_NAMES)
    assert labels.values == [str(i) for i in range(8)]
    assert labels.names[7] == "Abstract Algebra and Topology"
    assert labels.encode(["7", "Algebra"]) == [7, 0]


def test_label_map_unknown_label_is_named():
    labels = LabelMap.infer(["x", "y"])
    with pytest.raises(DataError, match="data row 2 has label 'z'"):
        labels.encode(["x", "z"], "eval.csv")


def test_inspect_reports_problems(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("Question,label\nWhat is 2+2?,0\nWhat is 2+2?,0\n,1\n\"b'x'\",1\n")
    report = inspect_file(path)
    assert report["rows"] == 4
    assert report["duplicate_rows"] == 1
    assert report["empty_text_rows"] == [3]
    assert report["bytes_literal_rows"] == 1
    assert report["label_counts"] == {"0": 2, "1": 2}
