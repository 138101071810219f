"""Batch scoring beyond one machine: a mathtune model on Spark, through MLflow's ``spark_udf``.

    from mathtune.spark import predict_udf
    udf, model = predict_udf("models:/math-topics/3", spark)
    scored = frame.withColumn("prediction", udf(*model.inputs)).select("id", "prediction.*")

A model is a mathtune model folder or an MLflow URI (``models:/name/version``, ``runs:/id/model``). Spark gets a
pyfunc model whose signature says what comes back (the label column first, the task's typed outputs, ``reason``
for a row the model could not score); a folder, or a model logged before mathtune logged signatures, is saved as
such a pyfunc model first (a local folder that Spark ships to its workers). deploy/spark/score.py is the job that
reads a table, scores it and writes Parquet; `docs/spark.md` says how to run it on a cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, MathtuneError, ModelError
from .io import remove_orphans
from .models.outputs import input_columns, output_columns
from .models.saved import MANIFEST, read_manifest

SPARK_TYPES = {"string": "string", "double": "double", "long": "bigint", "integer": "int", "boolean": "boolean"}
# Rows a Python worker gets at once: a tutor answers a few problems at a time, so its batches are small enough
# that a partition of thousands neither waits for all its answers in memory nor runs past a task timeout
TUTOR_BATCH_ROWS = 32


@dataclass
class SparkModel:
    source: str       # what the user named
    uri: str          # the pyfunc model Spark loads (with a signature)
    folder: Path      # the mathtune model folder inside it
    task: str
    inputs: list[str]
    outputs: list[tuple[str, str]]

    @property
    def result_type(self) -> str:
        """The UDF's Spark type: a struct of the output columns (the label first)."""
        return "struct<" + ",".join(f"`{n}`:{SPARK_TYPES[t]}" for n, t in self.outputs) + ">"


def resolve_model(model: str, workdir: str | os.PathLike | None = None) -> SparkModel:
    """The pyfunc model for ``model`` (a folder or an MLflow URI); stops with one line that names it when it is
    neither, before any Spark work."""
    from .tracking import load_registered, save_pyfunc, signature_of

    workdir = Path(workdir or tempfile.mkdtemp(prefix="mathtune-spark-"))
    if model.startswith(("models:/", "runs:/")):
        try:
            folder = load_registered(model)
            signature = signature_of(model)
        except MathtuneError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow's many failures: one line naming the URI
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ModelError(f"--model {model}: cannot load this MLflow model ({first}); check the name, version "
                             "and MLFLOW_TRACKING_URI") from None
        wanted = output_columns(folder)
        if signature is not None and signature.outputs is not None and \
                signature.outputs.input_names()[: len(wanted)] == [n for n, _ in wanted]:
            return SparkModel(model, model, folder, read_manifest(folder)["task"], input_columns(folder), wanted)
    else:
        folder = Path(model)
        if not (folder / MANIFEST).is_file():
            raise ModelError(f"--model {model}: no mathtune model folder (no {MANIFEST}) and not an MLflow URI "
                             "(models:/name/version or runs:/...)")
    uri = save_pyfunc(folder, workdir / f"pyfunc-{uuid.uuid4().hex[:8]}")
    return SparkModel(model, uri, folder, read_manifest(folder)["task"], input_columns(folder), output_columns(folder))


def input_format(path: str | os.PathLike) -> str:
    name = str(path).lower()
    if name.endswith(".parquet") or (Path(path).is_dir() and any(Path(path).glob("*.parquet"))):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise DataError(f"--input {path}: a .csv or .parquet file (or a folder of Parquet files) is expected")


def input_columns_of(path: str | os.PathLike) -> list[str]:
    """The columns of a CSV or Parquet input, read without reading its rows."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--input {path}: no such file or folder")
    try:
        if input_format(path) == "csv":
            import pandas as pd

            return list(pd.read_csv(path, nrows=0).columns)
        import pyarrow.parquet as pq

        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        return list(pq.read_schema(files[0]).names)
    except MathtuneError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable: say which file and why, in one line
        raise DataError(f"--input {path}: cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None


def check_input(path, model: SparkModel | str | os.PathLike, id_column: str = "id") -> None:
    """The input has the id column and every column the model (a SparkModel, or a model folder) reads; else
    DataError naming the missing ones."""
    inputs, task = (model.inputs, model.task) if isinstance(model, SparkModel) else \
        (input_columns(model), read_manifest(model)["task"])
    have = input_columns_of(path)
    missing = [c for c in (id_column, *inputs) if c not in have]
    if missing:
        raise DataError(f"--input {path}: missing column(s) {', '.join(missing)} (a {task} model reads "
                        f"{', '.join(inputs)}, and every row needs {id_column!r}); it has {', '.join(have)}")


def predict_udf(model: str, spark, workdir=None, env_manager: str = "local"):
    """A Spark UDF that scores rows with ``model`` (a folder or an MLflow URI) and returns the struct of its
    outputs, with the SparkModel that says which columns it reads (``model.inputs``) and returns. ``env_manager``:
    ``local`` runs it in the workers' own Python (mathtune installed there), ``uv`` or ``virtualenv`` in one built
    from the model's own requirements (the model carries mathtune's code: the workers need none)."""
    from .tracking import spark_udf

    resolved = model if isinstance(model, SparkModel) else resolve_model(model, workdir)
    if resolved.task == "tutor":
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(TUTOR_BATCH_ROWS))
    return spark_udf(spark, resolved.uri, resolved.result_type, env_manager), resolved


def restore_nulls(frame, model: SparkModel):
    """Null where the model returned none. MLflow casts a struct's string fields with numpy (mlflow 3:
    ``_convert_struct_values``), so a missing label or reason arrives as the text "None"; labels and names are
    never that text unless the model has such a label, and then they are left alone."""
    from pyspark.sql import functions as F

    values = set(read_manifest(model.folder).get("labels", {}).get("values", []) or [])
    keep = {"label", "name", "top_labels", "final_answer"} if "None" in values else set()
    strings = [n for n, t in model.outputs if t == "string" and n not in keep]
    return frame.select(*[F.when(F.col(f"`{c}`") == "None", F.lit(None)).otherwise(F.col(f"`{c}`")).alias(c)
                          if c in strings else F.col(f"`{c}`") for c in frame.columns])


def read_table(spark, input_path):
    """The input as a DataFrame. CSV is read as pandas and `mathtune predict` read it (RFC 4180): a quoted field may
    hold newlines and doubled quotes. Spark's defaults (one record a line, a backslash escape) would split such a
    question into several rows, one of them with a fragment of text for an id."""
    if input_format(input_path) == "csv":
        frame = spark.read.options(header=True, multiLine=True, quote='"', escape='"').csv(str(input_path))
        # a multi-line CSV file cannot be split: read whole, it would be scored by one core of the cluster
        cores = spark.sparkContext.defaultParallelism
        return frame.repartition(cores) if frame.rdd.getNumPartitions() < cores else frame
    return spark.read.parquet(str(input_path))


def score_table(spark, model: SparkModel, input_path, output_dir, id_column: str = "id",
                env_manager: str = "local") -> int:
    """Score every row of ``input_path`` and write Parquet (``id``, the outputs) to ``output_dir``: written to a
    temporary folder beside it and renamed, so a failed job leaves no half-written output. Returns the row count."""
    from pyspark.sql import functions as F

    output_dir = Path(output_dir)
    if output_dir.exists():
        raise DataError(f"--output {output_dir}: already exists; choose a new folder or remove it")
    frame = read_table(spark, input_path)
    udf, _ = predict_udf(model, spark, env_manager=env_manager)
    inputs = [F.col(f"`{c}`").cast("string").alias(c) for c in model.inputs]
    scored = restore_nulls(frame.select(F.col(f"`{id_column}`").alias(id_column), udf(*inputs).alias("_out"))
                           .select(id_column, "_out.*"), model)
    remove_orphans(output_dir.parent, f".{output_dir.name}.partial-")  # jobs killed before they could clean up
    partial = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        scored.write.parquet(str(partial))
        os.replace(partial, output_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return spark.read.parquet(str(output_dir)).count()
