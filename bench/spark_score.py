"""Spark batch scoring against `mathtune predict` in one process, same model, same rows.

    python bench/spark_score.py              # writes bench/results/spark_score.json

The model: topic-tfidf trained here on math-topics train.csv (the data directory). The rows: the questions of
math-topics test.csv repeated to ``--rows`` (default 50,000), with an id column. Runs: ``mathtune predict``
(predict_file, chunks of 10,000 rows, one process) and deploy/spark/score.py's score_table on ``local[2]``
(MLflow's spark_udf, Arrow batches of 10,000 rows, Parquet out), each timed from start to the file written; the
labels are compared row by row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import pandas as pd  # noqa: E402

from mathtune.config import load_recipe  # noqa: E402
from mathtune.inference import predict_file  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.paths import resolve_data_path  # noqa: E402
from mathtune.train.run import train_from_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "spark_score.json")
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    from mathtune.spark import resolve_model, score_table

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recipe = load_recipe(REPO / "recipes" / "topic-tfidf.yaml", ["tracking=none"])
        model = Path(train_from_recipe(recipe, str(work / "topic")).output)
        questions = pd.read_csv(resolve_data_path("math-topics/test.csv"))["Question"].astype(str)
        rows = pd.DataFrame({"Question": [questions.iloc[i % len(questions)] for i in range(args.rows)]})
        rows.insert(0, "id", [f"r{i}" for i in range(len(rows))])
        source = work / "rows.csv"
        rows.to_csv(source, index=False)

        start = time.perf_counter()
        predict_file(model, source, work / "pred.csv")
        local_seconds = time.perf_counter() - start

        start = time.perf_counter()
        spark = SparkSession.builder.master("local[2]").appName("mathtune bench").config("spark.ui.enabled", "false") \
            .getOrCreate()
        resolved = resolve_model(str(model), work / "pyfunc")
        score_table(spark, resolved, source, work / "scored")
        spark_seconds = time.perf_counter() - start
        spark.stop()

        expected = pd.read_csv(work / "pred.csv", dtype=str, keep_default_na=False).set_index("id")["label"]
        got = pd.read_parquet(work / "scored").set_index("id")["label"].reindex(expected.index)
        differ = got.ne(expected)
        equal = bool(len(got) == len(expected) == args.rows and not differ.any())
        examples = [{"id": i, "predict": expected[i], "spark": None if pd.isna(got[i]) else got[i]}
                    for i in expected.index[differ][:5]]
    result = {"benchmark": "spark_score", "cpus": os.cpu_count(), "model": "topic-tfidf", "rows": args.rows,
              "labels_equal": equal, "labels_differing": int(differ.sum()), "differing_examples": examples,
              "runs": {"mathtune predict (one process)": {"seconds": round(local_seconds, 1),
                                                          "rows_per_second": round(args.rows / local_seconds, 1)},
                       "Spark local[2] (spark_udf)": {"seconds": round(spark_seconds, 1),
                                                      "rows_per_second": round(args.rows / spark_seconds, 1)}}}
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
