"""Every shipped recipe family trains to the end with tracking on (a real sqlite MLflow store), registers a
version that loads back through models:/NAME/VERSION, and a tracking failure never loses the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import REPO, make_rows, records, write_recipe
from mathtune.cli import app
from mathtune.config import load_recipe, recipe_from_dict
from mathtune.models.saved import load_predictor
from mathtune.train.run import train_from_recipe

runner = CliRunner()


@pytest.fixture(autouse=True)
def own_store(workdir, monkeypatch):
    """An absolute store per test: MLflow caches stores by URI, so a relative sqlite:///mlflow.db would keep
    writing to the first test's folder."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/mlflow.db")


def _registered_loads(info: dict, rows: pd.DataFrame | None = None):
    """The registered version loads through its models:/ URI (the serving path) and predicts."""
    from mathtune.tracking import load_registered

    assert info["registry_uri"].startswith("models:/") and info["registered_version"] >= 1
    folder = load_registered(info["registry_uri"])
    return folder


def _shipped(name: str) -> dict:
    """A shipped recipe's settings, as a dict to shrink for tiny data."""
    return load_recipe(REPO / "recipes" / f"{name}.yaml").model_dump(mode="json")


def test_topic_tfidf_family(topic_csv, workdir):
    raw = _shipped("topic-tfidf")
    raw["data"] = {"train": "topics.csv", "val_size": 0.25}
    raw["tracking"] = {"register_as": "fam-topic"}
    result = train_from_recipe(recipe_from_dict(raw), "runs/topic")
    folder = _registered_loads(result.tracking)
    predictor = load_predictor(folder)
    assert predictor.task == "topic" and predictor.kind == "tfidf"


def test_topic_finetune_family(topic_csv, workdir, tiny_bert):
    raw = _shipped("topic-lora")
    raw["data"] = {"train": "topics.csv", "val_size": 0.25}
    raw["model"].update({"name": str(tiny_bert), "max_length": 64})
    raw["train"].update({"epochs": 1, "batch_size": 8})
    raw["tracking"] = {"register_as": "fam-topic-lora"}
    raw.pop("augment", None)
    result = train_from_recipe(recipe_from_dict(raw), "runs/topic-lora")
    assert load_predictor(_registered_loads(result.tracking)).kind == "transformer"


def test_misconception_family_logs_map_at_3(workdir):
    """The recipe that died after training on MLflow 3.17's metric-name rule (map@3)."""
    import mlflow

    make_rows(40).to_csv(workdir / "map.csv", index=False)
    raw = _shipped("misconception-tfidf")
    raw["data"].update({"train": "map.csv", "validation": None, "limit": None})
    raw["tfidf"].update({"min_df": 1})
    raw["tracking"] = {"register_as": "fam-mis"}
    result = train_from_recipe(recipe_from_dict(raw), "runs/mis")
    assert "error" not in result.tracking
    assert "map@3" in json.loads((result.output / "metrics.json").read_text())["validation"]  # users' name kept
    run = mlflow.MlflowClient(result.tracking["tracking_uri"]).get_run(result.tracking["run_id"])
    assert "map_at_3" in run.data.metrics and run.info.status == "FINISHED"
    assert load_predictor(_registered_loads(result.tracking)).task == "misconception"


def test_products_family(workdir):
    records({"shoes": 30, "kitchen": 30, "toys": 10}).to_json(workdir / "products.jsonl.gz", orient="records",
                                                             lines=True, compression="gzip")
    raw = _shipped("products-linear")
    raw["data"].update({"train": "products.jsonl.gz", "label_column": "main_cat", "validation": None})
    raw["products"].update({"text_fields": ["title", "description"], "categorical_fields": ["brand"],
                            "numeric_fields": ["price"], "list_count_fields": ["also_buy"], "drop_duplicates_on": [],
                            "exclude_labels": [], "cv_folds": 2})
    raw["tracking"] = {"register_as": "fam-products"}
    result = train_from_recipe(recipe_from_dict(raw), "runs/products")
    assert load_predictor(_registered_loads(result.tracking)).kind == "sklearn"


def test_tutor_family(gsm8k_jsonl, workdir, tiny_chat_llama):
    raw = _shipped("demo-tutor")
    raw["data"] = {"train": gsm8k_jsonl.name, "val_size": 0.2}
    raw["model"].update({"name": str(tiny_chat_llama), "max_length": 300, "lora": {"r": 4, "alpha": 8}})
    raw["train"].update({"epochs": 1, "batch_size": 4})
    raw["tutor"].update({"eval_samples": 2, "compare_base": False, "max_new_tokens": 4, "gguf_export": "none",
                         "question_column": None, "response_column": None, "answer_column": None,
                         "refusal_examples": 2, "system_prompt": "solve."})
    raw["tracking"] = {"register_as": "fam-tutor"}
    result = train_from_recipe(recipe_from_dict(raw), "runs/tutor")
    folder = _registered_loads(result.tracking)
    assert json.loads((folder / "mathtune.json").read_text())["task"] == "tutor"


# --------------------------------------------------------------------------- tracking failures


TFIDF = """task: topic
trainer: tfidf
data: {train: topics.csv, val_size: 0.25}
tracking: {register_as: flaky}
"""


def test_tracking_failure_keeps_the_model_and_mathtune_log_relogs_it(topic_csv, workdir, monkeypatch):
    import mlflow

    from mathtune import tracking

    def broken(self, model_dir, registered_name):
        raise mlflow.exceptions.MlflowException("registry is down")

    recipe = write_recipe(workdir, TFIDF)
    with monkeypatch.context() as patch:
        patch.setattr(tracking.MlflowTracker, "log_model", broken)
        result = runner.invoke(app, ["train", str(recipe), "--output", "runs/m"])
    assert result.exit_code == 2, result.output
    assert "registry is down" in result.output and "mathtune log runs/m" in result.output
    assert "Traceback" not in result.output
    manifest = json.loads((workdir / "runs" / "m" / "mathtune.json").read_text())
    assert "registry is down" in manifest["tracking"]["error"]  # the folder is complete, the failure recorded
    assert not (workdir / "runs" / "m.partial").exists()
    assert load_predictor(workdir / "runs" / "m").predict_frame(pd.DataFrame({"Question": ["Solve 2x = 4."]}), 1)

    logged = runner.invoke(app, ["log", "runs/m"])
    assert logged.exit_code == 0, logged.output
    assert "models:/flaky/1" in logged.output
    manifest = json.loads((workdir / "runs" / "m" / "mathtune.json").read_text())
    assert manifest["tracking"]["registry_uri"] == "models:/flaky/1" and "error" not in manifest["tracking"]


def test_unreachable_store_stops_before_training(topic_csv, workdir, monkeypatch):
    (workdir / "blocker").write_text("a file, so no folder can be made under it")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/blocker/x/mlflow.db")
    result = runner.invoke(app, ["train", str(write_recipe(workdir, TFIDF)), "--output", "runs/m"])
    assert result.exit_code == 2 and "tracking=none" in result.output, result.output
    assert not (workdir / "runs" / "m").exists()


# --------------------------------------------------------------------------- file-system and damaged files


def test_output_is_a_regular_file(topic_csv, workdir):
    (workdir / "taken").write_text("x")
    recipe = write_recipe(workdir, TFIDF.replace("tracking: {register_as: flaky}", "tracking: none"))
    result = runner.invoke(app, ["train", str(recipe), "--output", "taken/model"])
    assert result.exit_code == 2 and "taken" in result.output and "Traceback" not in result.output


def test_read_only_output(topic_csv, workdir):
    import os

    if os.geteuid() == 0:
        import errno

        from mathtune.cli import describe_os_error

        err = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/model")
        assert describe_os_error(err) == "/mnt/ro/model: the file system is read-only: choose a folder on a writable disk"
        return
    (workdir / "ro").mkdir(mode=0o500)
    recipe = write_recipe(workdir, TFIDF.replace("tracking: {register_as: flaky}", "tracking: none"))
    result = runner.invoke(app, ["train", str(recipe), "--output", "ro/model"])
    assert result.exit_code == 2 and "ro" in result.output


@pytest.fixture
def bert_model(topic_csv, workdir, tiny_bert) -> Path:
    recipe = recipe_from_dict({"trainer": "finetune", "data": {"train": "topics.csv"}, "tracking": "none",
                               "model": {"name": str(tiny_bert), "peft": "none", "max_length": 32},
                               "train": {"epochs": 1}})
    return train_from_recipe(recipe, "runs/bert").output


@pytest.mark.parametrize("damage", ["truncated-weights", "config-types", "manifest-json", "manifest-labels"])
def test_damaged_model_folders_get_one_line(bert_model, workdir, damage):
    weights = bert_model / "model" / "model.safetensors"
    if damage == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    elif damage == "config-types":
        config = json.loads((bert_model / "model" / "config.json").read_text())
        config["hidden_size"] = "big"
        (bert_model / "model" / "config.json").write_text(json.dumps(config))
    elif damage == "manifest-json":
        (bert_model / "mathtune.json").write_text("{not json")
    else:
        manifest = json.loads((bert_model / "mathtune.json").read_text())
        manifest["labels"] = 7
        (bert_model / "mathtune.json").write_text(json.dumps(manifest))
    pd.DataFrame({"id": ["1"], "Question": ["Solve 2x = 4."]}).to_csv(workdir / "t.csv", index=False)
    commands = [["predict", str(bert_model), "--data", "t.csv", "--output", "p.csv"]]
    if damage != "manifest-labels":  # export does not read the labels
        commands.append(["export", str(bert_model), "--onnx"])
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and str(bert_model) in result.output.replace("\n", "")


def test_a_bug_exits_1_with_a_log_file(workdir, monkeypatch):
    monkeypatch.setenv("MATHTUNE_LOG_DIR", str(workdir / "logs"))

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a real bug")

    monkeypatch.setattr("mathtune.data.inspect.inspect_file", boom)
    (workdir / "d.csv").write_text("Question,label\nx,1\n")
    result = runner.invoke(app, ["data", "d.csv"])
    assert result.exit_code == 1 and "bug" in result.output
    logs = list((workdir / "logs").glob("error-*.log"))
    assert logs and "ZeroDivisionError" in logs[0].read_text()


def test_plain_progress_lines_without_a_terminal(capsys):
    from mathtune.cli import PlainReporter

    reporter = PlainReporter(every_s=3600, every_n=5)
    with reporter:
        reporter.start("training epoch 1", 10)
        for _ in range(10):
            reporter.advance(1, loss=0.5)
        reporter.epoch_end(1, {"f1_micro": 0.9})
    err = capsys.readouterr().err
    assert "training epoch 1: step 5/10 (50%), loss 0.5000" in err and "ETA" in err
    assert "epoch 1 validation: f1_micro 0.9000" in err
