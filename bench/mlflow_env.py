"""A registered model runs wherever MLflow runs models (issue #45): in an environment MLflow builds from the model's
own requirements, with no mathtune installed there.

    python bench/mlflow_env.py [--lora]     # writes bench/results/mlflow_env.json (PyPI reachable; minutes)

A TF-IDF topic model (and with --lora a MiniLM-LoRA one; torch from the local wheels in UV_FIND_LINKS) is trained
from its recipe, logged and registered in a local sqlite store, then scored three ways on the same questions:
`mathtune predict`, `mlflow models predict -m models:/NAME/1 --env-manager uv`, and `mlflow.pyfunc.spark_udf(...,
env_manager="uv")` on Spark local[2]. The labels must be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS
from mathtune.io import write_json

QUESTIONS = ["What is 2 + 2?", "Find the derivative of x^2 sin x.", "How many ways can 5 books be arranged on a shelf?",
             "Prove that the square root of 2 is irrational.", "What is the probability of rolling a 6 twice?"]
BIN = Path(sys.executable).parent


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=True)


def one(recipe: str, name: str, folder: Path, env: dict, spark: bool, overrides: tuple[str, ...] = ()) -> dict:
    started = time.perf_counter()
    model = folder / name
    run([str(BIN / "mathtune"), "train", str(REPO / "recipes" / f"{recipe}.yaml"), "--output", str(model),
         "--overwrite", "--set", "tracking.register_as=" + name, *(a for o in overrides for a in ("--set", o))],
        env, folder)
    data = folder / "questions.csv"
    data.write_text("Question\n" + "\n".join(f'"{q}"' for q in QUESTIONS) + "\n")
    run([str(BIN / "mathtune"), "predict", str(model), "--data", str(data), "--output", str(folder / "ours.csv")],
        env, folder)
    import pandas as pd

    ours = pd.read_csv(folder / "ours.csv")["label"].astype(str).tolist()
    (folder / "input.json").write_text(json.dumps({"dataframe_split": {"columns": ["Question"],
                                                                       "data": [[q] for q in QUESTIONS]}}))
    began = time.perf_counter()
    predicted = run([str(BIN / "mlflow"), "models", "predict", "-m", f"models:/{name}/1", "--env-manager", "uv",
                     "-i", str(folder / "input.json"), "-t", "json"], env, folder).stdout
    rows = json.loads(predicted[predicted.index("{"):])["predictions"]
    theirs = [str(r["label"]) for r in rows]
    from mathtune.model_env import requirements

    result = {"recipe": recipe, "requirements": requirements(model),
              "mathtune_predict": ours, "mlflow_models_predict_uv": theirs, "same_labels": ours == theirs,
              "uv_predict_seconds": round(time.perf_counter() - began, 1)}
    if spark:
        began = time.perf_counter()
        code = ("import os, mlflow, pandas as pd\nfrom pyspark.sql import SparkSession\n"
                "spark = SparkSession.builder.master('local[2]').getOrCreate()\n"
                f"udf = mlflow.pyfunc.spark_udf(spark, 'models:/{name}/1', result_type='string', env_manager='uv')\n"
                f"frame = spark.createDataFrame(pd.DataFrame({{'Question': {QUESTIONS!r}}}))\n"
                "print('LABELS', [r[0] for r in frame.select(udf('Question')).collect()])\n")
        out = run([sys.executable, "-c", code], {**env, "SPARK_LOCAL_IP": "127.0.0.1"}, folder).stdout
        labels = json.loads(out.split("LABELS", 1)[1].strip().replace("'", '"'))
        result.update(spark_udf_uv=labels, spark_same_labels=labels == ours,
                      spark_seconds=round(time.perf_counter() - began, 1))
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lora", action="store_true", help="also a MiniLM-LoRA topic model (torch, transformers)")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--lora-only", action="store_true", help="only the MiniLM-LoRA model")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mathtune-mlflow-env-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db", "PATH": f"{BIN}:{os.environ['PATH']}",
           "UV_FIND_LINKS": os.environ.get("UV_FIND_LINKS", "/opt/wheels")}
    results = {"benchmark": "mlflow_env", "cpus": os.cpu_count(), "mlflow": __import__("mlflow").__version__,
               "models": {}}
    try:
        if not args.lora_only:
            results["models"]["tfidf"] = one("topic-tfidf", "bench-topic-tfidf", folder, env, not args.no_spark)
        if args.lora or args.lora_only:
            # a small one: what is checked is the environment it runs in, not its F1
            results["models"]["minilm-lora"] = one("topic-lora", "bench-topic-lora", folder, env, False,
                                                   ("data.limit=400", "train.epochs=1"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if (RESULTS / "mlflow_env.json").is_file():  # a run of one part keeps the other's figures
        kept = json.loads((RESULTS / "mlflow_env.json").read_text()).get("models", {})
        results["models"] = {**kept, **results["models"]}
    write_json(RESULTS / "mlflow_env.json", results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
