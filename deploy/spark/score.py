"""Score a table with a mathtune model on Spark and write Parquet.

    python deploy/spark/score.py --model MODEL --input PATH --output DIR [--master local[2]] [--id-column id]
    spark-submit deploy/spark/score.py --model models:/math-topics/3 --input s3://bank/questions.parquet --output s3://bank/topics

MODEL: a mathtune model folder or an MLflow URI (models:/name/version, runs:/...). PATH: CSV (with a header) or
Parquet with an id column and the task's input columns. The output has the id, the label (null for a row the
model could not score, with the reason in `reason`) and the task's other outputs. Without --master the job runs on
the cluster it was submitted to. Everything that can be checked before Spark starts is (the model, the input's
columns, the output folder), and the output is written to a temporary folder and renamed when every row is done.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a mathtune model folder or an MLflow model URI")
    parser.add_argument("--input", required=True, help="CSV or Parquet: an id column and the task's input columns")
    parser.add_argument("--output", required=True, help="a new folder for the Parquet output")
    parser.add_argument("--master", default=None, help="e.g. local[2]; default: the cluster spark-submit targets")
    parser.add_argument("--id-column", default="id")
    parser.add_argument("--env-manager", default="local", choices=["local", "uv", "virtualenv"],
                        help="local: the workers' own Python (mathtune installed there); uv or virtualenv: an "
                             "environment built from the model's own requirements (workers need no mathtune)")
    args = parser.parse_args(argv)

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line of output per problem
    warnings.simplefilter("ignore", UserWarning)  # MLflow's advice to model authors is not the user's business
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mathtune.errors import MathtuneError
    from mathtune.spark import check_input, input_columns_of, resolve_model, score_table

    try:
        if os.path.exists(args.output):
            raise MathtuneError(f"--output {args.output}: already exists; choose a new folder or remove it")
        input_columns_of(args.input)  # the input can be read: checked before the model is loaded
        if os.path.isfile(os.path.join(args.model, "mathtune.json")):  # a folder: its columns, before MLflow
            check_input(args.input, args.model, args.id_column)
        model = resolve_model(args.model, tempfile.mkdtemp(prefix="mathtune-spark-"))
        check_input(args.input, model, args.id_column)
    except MathtuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(f"mathtune score {model.task}")
    if args.master:
        builder = builder.master(args.master)
        if args.master.startswith("local"):  # local workers run this interpreter, where mathtune is installed
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = builder.getOrCreate()
    start = time.perf_counter()
    try:
        rows = score_table(spark, model, args.input, args.output, args.id_column, args.env_manager)
    except MathtuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    seconds = time.perf_counter() - start
    print(f"scored {rows} rows with {args.model} ({model.task}) in {seconds:.1f} s "
          f"({rows / max(seconds, 1e-9):.1f} rows/s); wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
