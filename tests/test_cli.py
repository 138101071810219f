"""The CLI: each verb works, and bad input gets one clear message and exit code 2."""

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import write_recipe
from mathtune.cli import app
from mathtune.errors import DataError

runner = CliRunner()

TFIDF = """# mathtune train recipe.yaml
task: topic
trainer: tfidf
data: {train: topics.csv, val_size: 0.25}
tracking: none
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_verbs():
    result = run("--help")
    for verb in ("train", "evaluate", "predict", "split", "data"):
        assert verb in result.output
    assert "Example" in run("train", "--help").output


@pytest.fixture
def trained(topic_csv, workdir):
    recipe = write_recipe(workdir, TFIDF)
    result = run("train", recipe, "--output", "runs/m")
    assert result.exit_code == 0, result.output
    assert "f1_micro" in result.output and "runs/m" in result.output
    return workdir / "runs" / "m"


def test_predict_writes_submission_format(trained, topic_test_csv, workdir):
    result = run("predict", trained, "--data", topic_test_csv, "--output", "sub.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(workdir / "sub.csv")
    assert list(sub.columns) == ["id", "label"]
    assert len(sub) == 12 and set(sub["label"]) <= {0, 1, 4}


def test_predict_streams_in_chunks_with_the_same_result(trained, workdir):
    from mathtune.inference import predict_file

    questions = [f"Solve for x: {i}x + {i + 1} = {3 * i}." if i % 2 else f"Find the area of a circle of radius {i}."
                 for i in range(1, 54)]
    pd.DataFrame({"id": [f"q{i}" for i in range(len(questions))], "Question": questions}).to_csv("many.csv", index=False)
    whole_rows, _ = predict_file(trained, "many.csv", "whole.csv")
    chunked_rows, _ = predict_file(trained, "many.csv", "chunked.csv", chunk_rows=7)  # 8 chunks, the last short
    assert whole_rows == chunked_rows == 53
    whole, chunked = pd.read_csv("whole.csv"), pd.read_csv("chunked.csv")
    assert chunked.equals(whole) and chunked["id"].tolist() == [f"q{i}" for i in range(53)]
    predict_file(trained, "many.csv", "chunked.parquet", chunk_rows=10)  # other formats: collected, then written
    assert pd.read_parquet("chunked.parquet").astype(str).equals(whole.astype(str))
    pd.DataFrame({"Question": questions[:9]}).to_csv("no_ids.csv", index=False)
    predict_file(trained, "no_ids.csv", "no_ids_out.csv", chunk_rows=4)  # row numbers continue across chunks
    assert pd.read_csv("no_ids_out.csv")["id"].tolist() == list(range(9))
    pd.DataFrame({"Question": questions[:5] + [""] + questions[:3]}).to_csv("hole.csv", index=False)
    with pytest.raises(DataError, match="data row 6") as err:  # the file's row number, not the chunk's
        predict_file(trained, "hole.csv", "hole_out.csv", chunk_rows=4)
    assert "hole.csv" in str(err.value) and not (workdir / "hole_out.csv").exists()  # nothing half-written


def test_evaluate_json(trained, labelled_eval_csv, workdir):
    result = run("evaluate", trained, "--data", labelled_eval_csv, "--json", "m.json", "--plot", "cm.png")
    assert result.exit_code == 0, result.output
    import json

    metrics = json.loads((workdir / "m.json").read_text())
    assert {"accuracy", "f1_micro", "f1_macro", "f1_weighted", "per_class", "confusion_matrix"} <= set(metrics)
    # do its percentages hold on rows it never saw: the calibration error and how often right when 90% sure
    assert 0 <= metrics["calibration_error"] <= 1 and "calibration_error" in result.output
    assert 0 <= metrics["when_sure"]["right"] <= metrics["when_sure"]["rows"] <= metrics["n"]
    assert (workdir / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_unseen_label_exits_2(trained, workdir):
    pd.DataFrame({"Question": ["What is 1+1?", "Integrate x dx"], "label": ["0", "9"]}).to_csv("odd.csv", index=False)
    result = run("evaluate", trained, "--data", "odd.csv")
    assert result.exit_code == 2
    assert "odd.csv" in result.output and "data row 2" in result.output and "'9'" in result.output


def test_unknown_recipe_key_exits_2(topic_csv, workdir):
    recipe = write_recipe(workdir, TFIDF + "epochs: 3\n")
    result = run("train", recipe)
    assert result.exit_code == 2 and "unknown key 'epochs'" in result.output


def test_missing_file_and_column_exit_2(workdir, topic_csv):
    result = run("train", write_recipe(workdir, TFIDF.replace("topics.csv", "nope.csv")))
    assert result.exit_code == 2 and "nope.csv" in result.output
    result = run("train", write_recipe(workdir, TFIDF), "--set", "data.text_column=Problem")
    assert result.exit_code == 2 and "missing column(s) Problem" in result.output
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


def test_non_utf8_and_empty_text_exit_2(workdir):
    (workdir / "topics.csv").write_bytes(b"Question,label\nx,0\n\xff\xfe,1\n")
    result = run("train", write_recipe(workdir, TFIDF))
    assert result.exit_code == 2 and "line 3" in result.output
    (workdir / "topics.csv").write_text("Question,label\nx,0\n  ,1\ny,1\n")
    result = run("train", write_recipe(workdir, TFIDF))
    assert result.exit_code == 2 and "empty" in result.output and "data row 2" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs where there is a GPU")
def test_qlora_on_cpu_stops_clearly(workdir, topic_csv):
    result = run("train", "recipes/topic-qlora.yaml" if False else write_recipe(workdir, TFIDF), "--set", "trainer=finetune",
                 "--set", "model.peft=qlora")
    assert result.exit_code == 2 and "CUDA" in result.output


def test_split_and_data(topic_csv, workdir):
    result = run("split", topic_csv, "--val-size", "0.25", "--seed", "0", "--output-dir", "out")
    assert result.exit_code == 0, result.output
    train = pd.read_csv(workdir / "out" / "topics_train.csv")
    val = pd.read_csv(workdir / "out" / "topics_val.csv")
    assert len(train) + len(val) == 61 and len(val) == 15
    result = run("data", topic_csv)
    assert result.exit_code == 0 and "bytes literal rows" in result.output and "61" in result.output
    assert run("data", "missing.csv").exit_code == 2
