"""MLflow: params, per-epoch metrics, artifacts and a registered model in the embedded store."""

import pandas as pd

from mathtune.config import recipe_from_dict
from mathtune.train.run import train_from_recipe


def test_run_is_logged_and_model_registered(topic_csv, workdir):
    import mlflow

    recipe = recipe_from_dict({"task": "topic", "trainer": "tfidf", "data": {"train": "topics.csv", "val_size": 0.25},
                               "tracking": {"register_as": "test-topics"}})
    result = train_from_recipe(recipe, "runs/tracked")
    info = result.tracking
    # the default store, named by its absolute path (the one the run wrote, wherever it is read from)
    assert info["tracking_uri"] == f"sqlite:///{(workdir / 'mlflow.db').resolve()}" and (workdir / "mlflow.db").is_file()
    assert info["registry_uri"] == "models:/test-topics/1"
    mlflow.set_tracking_uri(info["tracking_uri"])
    run = mlflow.get_run(info["run_id"])
    assert run.data.params["trainer"] == "tfidf"
    assert run.data.metrics["f1_micro"] > 0.5
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=info["run_id"], artifact_path="reports")}
    assert "reports/confusion_matrix.png" in artifacts and "reports/recipe.yaml" in artifacts
    model = mlflow.pyfunc.load_model("models:/test-topics/1")
    out = model.predict(pd.DataFrame({"Question": ["Find the remainder when 5^3 is divided by 7."]}))
    assert list(out.columns) == ["label", "name", "probability", "reason"] and out["reason"].isna().all()
    # a second run registers version 2
    second = train_from_recipe(recipe, "runs/tracked", overwrite=True)
    assert second.tracking["registered_version"] == 2


def test_tracking_uri_from_environment(topic_csv, workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'other.db'}")
    recipe = recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv", "val_size": 0.25},
                               "tracking": {"log_model": False}})
    result = train_from_recipe(recipe, "runs/env")
    assert (workdir / "other.db").is_file() and result.tracking["tracking_uri"].endswith("other.db")


def test_serve_from_registry_uri(topic_csv, workdir):
    from fastapi.testclient import TestClient

    from mathtune.serve.app import create_app

    recipe = recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv", "val_size": 0.25},
                               "tracking": {"register_as": "served-topics"}})
    train_from_recipe(recipe, "runs/reg")
    client = TestClient(create_app(["models:/served-topics/1"]))
    response = client.post("/v1/topics", json={"questions": ["Find the remainder when 9^4 is divided by 5."]})
    assert response.status_code == 200 and response.json()["model"] == "models:/served-topics/1"
