"""Misconception task: prompt inputs, joint labels, MAP@3, candidate switches, grouped split, submission format."""


import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import make_rows
from mathtune.cli import app
from mathtune.config import recipe_from_dict
from mathtune.errors import DataError
from mathtune.metrics.ranking import map_at_k
from mathtune.tasks import LabelMap, MisconceptionTask
from mathtune.tasks.misconception import DEFAULT_PROMPT
from mathtune.train.run import load_splits, train_from_recipe


@pytest.fixture
def map_csv(workdir):
    path = workdir / "map.csv"
    make_rows(40).to_csv(path, index=False)
    return path


def recipe(**data):
    return recipe_from_dict({"task": "misconception", "trainer": "tfidf",
                             "data": {"train": "map.csv", "id_column": "row_id", "val_size": 0.25, **data},
                             "tfidf": {"classifier": "logreg", "C": 10, "min_df": 1}, "tracking": "none"})


def test_map_at_3():
    top = np.array([[1, 2, 3], [2, 1, 3], [3, 2, 1], [4, 5, 6]])
    assert map_at_k([1, 1, 1, 1], top) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    assert map_at_k([-1], np.array([[0, 1, 2]])) == 0.0


def test_prompt_and_joint_labels(map_csv):
    task = MisconceptionTask()
    frame = pd.read_csv(map_csv, dtype=str, keep_default_na=False)
    texts = task.inputs(frame, "ignored", map_csv)
    assert texts[0].startswith("Analyze the student's reasoning") and frame.loc[0, "StudentExplanation"] in texts[0]
    labels = task.raw_labels(frame, "ignored", map_csv)
    assert all(":" in label for label in labels) and "True_Correct:NA" in labels
    custom = MisconceptionTask({"prompt_template": "Q: {QuestionText} A: {MC_Answer} E: {StudentExplanation}"})
    assert custom.inputs(frame, "", map_csv)[0].startswith("Q: ")
    assert DEFAULT_PROMPT.count("{") == 3


def test_category_misconception_mismatch_is_named(workdir):
    frame = make_rows(3)
    frame.loc[1, "Misconception"] = "NA"
    frame.loc[1, "Category"] = "False_Misconception"
    with pytest.raises(DataError, match="data row 2"):
        MisconceptionTask().raw_labels(frame, "", "map.csv")


def test_missing_fields_are_named(workdir):
    frame = make_rows(3).drop(columns=["MC_Answer"])
    with pytest.raises(DataError, match="MC_Answer"):
        MisconceptionTask().inputs(frame, "", "map.csv")


def test_candidate_masks_use_question_and_correctness(map_csv):
    task = MisconceptionTask()
    frame = pd.read_csv(map_csv, dtype=str, keep_default_na=False)
    raw = task.raw_labels(frame, "", map_csv)
    labels = LabelMap.infer(raw)
    structure = task.structure(frame, raw, labels)
    assert structure["correct_answer"] == {"101": "3/4", "202": "0.5", "303": "3/4"}
    query = pd.DataFrame({"QuestionId": ["202", "202", "999"], "MC_Answer": ["0.45", "0.5", "x"]})
    mask, notes = task.candidate_masks(query, structure, labels)
    allowed = [{labels.names[i] for i in np.where(row)[0]} for row in mask]
    assert allowed[0] <= {"False_Misconception:Longer_is_bigger", "False_Neither:NA"}
    assert allowed[1] == {"True_Correct:NA", "True_Neither:NA"}
    assert len(allowed[2]) == len(labels)  # unseen question: all labels, and the user is told
    assert notes and "999" in notes[0]


def test_grouped_split_holds_out_whole_questions(map_csv):
    train, val = load_splits(recipe(split="grouped", val_size=0.34))
    assert set(train.frame["QuestionId"]).isdisjoint(set(val.frame["QuestionId"]))


def test_train_reports_map_and_ablation(map_csv):
    result = train_from_recipe(recipe(), "runs/mis")
    assert result.metrics["map@3"] > 0.6
    assert len(result.metrics["ablation"]) == 4
    assert {row["category"] for row in result.metrics["per_category"]} >= {"True_Correct", "False_Misconception"}
    grouped = train_from_recipe(recipe(split="grouped", val_size=0.34), "runs/mis-grouped")
    assert 0 <= grouped.metrics["map@3"] <= 1


def test_cli_predict_writes_top3_submission(map_csv, workdir):
    train_from_recipe(recipe(), "runs/mis")
    test = make_rows(2, seed=5).drop(columns=["Category", "Misconception"])
    test.loc[0, "QuestionId"] = "404"
    test.to_csv(workdir / "test.csv", index=False)
    result = CliRunner().invoke(app, ["predict", "runs/mis", "--data", "test.csv", "--output", "sub.csv"])
    assert result.exit_code == 0, result.output
    assert "not seen in training" in result.output and "404" in result.output
    sub = pd.read_csv(workdir / "sub.csv", dtype=str)
    assert list(sub.columns) == ["row_id", "Category:Misconception"]
    assert all(len(v.split(" ")) == 3 for v in sub["Category:Misconception"])
    result = CliRunner().invoke(app, ["evaluate", "runs/mis", "--data", "map.csv", "--json", "m.json"])
    assert result.exit_code == 0 and "map@3" in result.output


def test_cli_grouped_split(map_csv, workdir):
    result = CliRunner().invoke(app, ["split", str(map_csv), "--group-column", "QuestionId", "--val-size", "0.34",
                                      "--output-dir", "g"])
    assert result.exit_code == 0, result.output
    train = pd.read_csv(workdir / "g" / "map_train.csv", dtype=str)
    val = pd.read_csv(workdir / "g" / "map_val.csv", dtype=str)
    assert set(train["QuestionId"]).isdisjoint(val["QuestionId"]) and len(train) + len(val) == 120


def test_limit_can_drop_rare_labels_from_training(map_csv, workdir, monkeypatch):
    """data.limit may leave a rare label out of the training part: validation counts it as a miss, no error."""
    import mathtune.train.run as run

    frame = make_rows(40)
    frame.loc[:5, ["Category", "Misconception"]] = ["True_Misconception", "Rare_one"]
    frame.to_csv(map_csv, index=False)
    real = run.stratified_subsample

    def drop_rare(labels, n, seed):  # the subsample happens to miss the rare label entirely
        keep = real(labels, n, seed)
        return [i for i in keep if "Rare_one" not in labels[i]]

    monkeypatch.setattr(run, "stratified_subsample", drop_rare)
    train, val = load_splits(recipe(limit=60))
    assert not any("Rare_one" in x for x in train.raw_labels) and any("Rare_one" in x for x in val.raw_labels)
    result = train_from_recipe(recipe(limit=60), "runs/limited")
    assert result.metrics["n_unseen_labels"] >= 1
