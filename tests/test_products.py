"""Products: field parsing, SMOTE inside the pipeline, cross-validated metrics with AUC, non-pickle saving."""


import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import records
from mathtune.cli import app
from mathtune.config import ProductsConfig, recipe_from_dict
from mathtune.errors import ModelError, RecipeError
from mathtune.models.saved import load_predictor
from mathtune.tasks.products import ProductsTask, count_items, parse_number
from mathtune.train.run import train_from_recipe


def recipe(**products):
    return recipe_from_dict({"task": "products", "trainer": "sklearn",
                             "data": {"train": "products.jsonl.gz", "label_column": "main_cat", "val_size": 0.25},
                             "products": {"text_fields": ["title", "description"], "categorical_fields": ["brand"],
                                          "numeric_fields": ["price"], "list_count_fields": ["also_buy"],
                                          "drop_duplicates_on": ["link"], "n_estimators": 30, "cv_folds": 3, **products},
                             "tracking": "none"})


@pytest.fixture
def products_file(workdir):
    path = workdir / "products.jsonl.gz"
    records({"shoes": 40, "kitchen": 40, "toys": 8}).to_json(path, orient="records", lines=True, compression="gzip")
    return path


def test_parsing():
    assert parse_number("₹32,999") == 32999.0 and parse_number("4.2") == 4.2 and np.isnan(parse_number(""))
    assert count_items('["a", "b"]') == 2 and count_items("a, b, c") == 3 and count_items("") == 0
    features = ProductsTask(ProductsConfig(text_fields=["title"], numeric_fields=["price"], list_count_fields=["also_buy"])) \
        .features(records({"toys": 2}), "x")
    assert list(features.columns) == ["text", "num_price", "count_also_buy"]


@pytest.mark.parametrize("classifier", ["random_forest", "linear", "gradient_boosting"])
def test_products_pipeline_trains(products_file, classifier):
    result = train_from_recipe(recipe(classifier=classifier), f"runs/{classifier}")
    m = result.metrics
    assert m["f1_macro"] > 0.8 and 0.5 < m["auc_ovr"] <= 1.0
    assert {"accuracy", "f1_macro", "auc_ovr"} <= set(m["cross_validation"])
    assert m["n_train"] + m["n_validation"] == 88  # the duplicate link was dropped
    assert (result.output / "pipeline.skops").is_file() and (result.output / "cv_confusion_matrix.png").is_file()
    if classifier != "gradient_boosting":
        assert (result.output / "feature_importance.png").is_file()
    predictor = load_predictor(result.output)
    # the Models tab's "right about N times in 10" (its primary metric is F1-macro, not a share of answers right)
    from mathtune.serve.webui.models_tab import how_often_right

    assert predictor.manifest["validation"]["accuracy"] == pytest.approx(m["accuracy"])
    assert "times in 10" in how_often_right("products", predictor)
    probs = predictor.probabilities(records({"toys": 2}, seed=3))
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_smote_sits_inside_the_pipeline(products_file):
    from mathtune.train.tabular import build_pipeline

    task = ProductsTask(recipe().products)
    features = task.features(records({"shoes": 20, "toys": 4}), "x")
    pipeline = build_pipeline(recipe().products, features, min_class_count=4)
    assert list(pipeline.named_steps) == ["features", "smote", "clf"]
    assert pipeline.named_steps["smote"].k_neighbors == 3


def test_untrusted_types_are_refused(products_file, workdir):
    import skops.io as sio

    result = train_from_recipe(recipe(classifier="linear"), "runs/p")
    sio.dump({"f": pd.DataFrame}, result.output / "pipeline.skops")
    with pytest.raises(ModelError, match="refuses"):
        load_predictor(result.output)


def test_products_needs_sklearn_trainer(products_file):
    raw = recipe().model_dump()
    raw["trainer"] = "tfidf"
    with pytest.raises(RecipeError, match="sklearn"):
        train_from_recipe(recipe_from_dict(raw), "runs/x")


def test_products_cli_evaluate_and_predict(products_file, workdir):
    train_from_recipe(recipe(classifier="linear"), "runs/p")
    records({"shoes": 3, "kitchen": 3, "toys": 3}, seed=9).to_csv(workdir / "new.csv", index=False)
    result = CliRunner().invoke(app, ["evaluate", "runs/p", "--data", "new.csv", "--label-column", "main_cat"])
    assert result.exit_code == 0, result.output
    assert "auc_ovr" in result.output
    result = CliRunner().invoke(app, ["predict", "runs/p", "--data", "new.csv", "--output", "pred.csv"])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(workdir / "pred.csv").columns) == ["id", "label"]
