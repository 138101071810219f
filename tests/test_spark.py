"""Batch scoring on a local Spark (local[2]) through MLflow's spark_udf: the labels are `mathtune predict`'s, row by
row; refused rows come back with a null label and a reason; bad input stops before Spark starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from helpers import REPO, _rows

pytest.importorskip("pyspark", reason="pyspark is not installed: run `make install-all` (mathtune[spark])")
SCORE = REPO / "deploy" / "spark" / "score.py"


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this interpreter (mathtune is here)
    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[2]").appName("mathtune-test") \
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate()
    yield session
    session.stop()


def questions(tmp_path, n=40):
    frame = pd.DataFrame(_rows(n // 3 + 1, seed=7))[["Question"]].head(n)
    frame.insert(0, "id", [f"q{i}" for i in range(len(frame))])
    frame.loc[3, "Question"] = ""  # a row the model cannot score
    frame.loc[5, "Question"] = 'Find x if\n2x = "10",\nand say why.'  # a quoted field with newlines and quotes
    path = tmp_path / "questions.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.mark.slow
def test_spark_udf_labels_are_mathtune_predicts_row_by_row(spark, tiny_topic_model, tmp_path):
    from mathtune.inference import predict_file
    from mathtune.spark import resolve_model, score_table

    path, frame = questions(tmp_path)
    model = resolve_model(str(tiny_topic_model), tmp_path / "work")
    assert model.result_type.startswith("struct<`label`:string")  # the label first, not a probability
    # what a job killed with SIGKILL left (its driver gone), and one still being written by a live driver
    killed, running = tmp_path / ".scored.partial-999999999-dead", tmp_path / f".scored.partial-{os.getpid()}-live"
    for folder in (killed, running):
        (folder / "part-0.parquet").parent.mkdir()
        (folder / "part-0.parquet").write_bytes(b"half")
    rows = score_table(spark, model, path, tmp_path / "scored")
    assert not killed.exists() and running.exists()
    shutil.rmtree(running)
    scored = pd.read_parquet(tmp_path / "scored").set_index("id").loc[frame["id"]]
    assert rows == len(frame) and list(scored.columns)[:3] == ["label", "name", "probability"]
    assert pd.read_parquet(tmp_path / "scored")["id"].is_unique  # a multi-line question is one row, not several
    assert pd.isna(scored.loc["q3", "label"]) and "empty" in scored.loc["q3", "reason"]
    kept = frame.drop(index=3)
    kept.to_csv(tmp_path / "kept.csv", index=False)
    predict_file(tiny_topic_model, tmp_path / "kept.csv", tmp_path / "pred.csv")
    expected = pd.read_csv(tmp_path / "pred.csv", dtype=str).set_index("id")["label"]
    assert scored.loc[kept["id"], "label"].tolist() == expected.loc[kept["id"]].tolist()
    assert scored.loc[kept["id"], "reason"].isna().all()
    assert not list(tmp_path.glob(".scored.partial-*"))  # written whole, then renamed


@pytest.mark.slow
def test_a_registered_model_has_a_signature_that_spark_reads_as_the_label(spark, tiny_topic_model, tmp_path,
                                                                           monkeypatch):
    import mlflow

    from mathtune.spark import predict_udf

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    from mathtune.tracking import log_folder

    info = log_folder(tiny_topic_model, register_as="spark-topics")
    uri = info["registry_uri"]
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.outputs.input_names()[0] == "label" and signature.inputs.input_names() == ["Question"]
    udf, model = predict_udf(uri, spark)
    assert model.uri == uri  # logged with a signature: used as it is
    frame = spark.createDataFrame(pd.DataFrame({"Question": ["Solve for x: 2x + 3 = 7.", "Find the remainder "
                                                             "when 7^5 is divided by 3."]}))
    out = frame.select(udf("Question").alias("p")).select("p.label", "p.probability").toPandas()
    assert out["label"].map(type).eq(str).all() and out["probability"].between(0, 1).all()


@pytest.mark.parametrize("args, needle", [
    (["--model", "no/such/folder"], "--model no/such/folder: no mathtune model folder"),
    (["--input", "missing.csv"], "--input missing.csv: no such file"),
    (["--input", "nocols.csv"], "missing column(s) Question"),
])
def test_bad_input_stops_before_spark_with_one_line(tiny_topic_model, tmp_path, args, needle):
    pd.DataFrame({"id": ["1"], "text": ["x"]}).to_csv(tmp_path / "nocols.csv", index=False)
    pd.DataFrame({"id": ["1"], "Question": ["Solve 2x = 4."]}).to_csv(tmp_path / "ok.csv", index=False)
    given = {"--model": str(tiny_topic_model), "--input": "ok.csv", "--output": "out"}
    given.update(dict(zip(args[::2], args[1::2])))
    proc = subprocess.run([sys.executable, str(SCORE), *[x for kv in given.items() for x in kv]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
