"""What a mathtune model answers for a table of rows, as MLflow's pyfunc (and so Spark's ``spark_udf``) returns it:
the label column first, then the task's other outputs in typed columns, and ``reason`` for a row the model could
not score (an empty text), whose label is null. One place for the column names and their types: the logged
model's signature is built from ``output_columns``."""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .saved import read_manifest

REASON = "reason"
TUTOR_INPUT = "question"
TUTOR_CHUNK = 8  # problems generated together: a partition of thousands is answered a few at a time
TUTOR_OUTPUTS = [("final_answer", "string"), ("answer", "string"), ("method", "string"), (REASON, "string")]


def _task(manifest: dict):
    from ..tasks import get_task

    return get_task(manifest["task"], manifest.get("task_settings") or None)


def input_columns(folder) -> list[str]:
    """The columns a model reads (every one a string in the signature; numbers in text are parsed by the task)."""
    manifest = read_manifest(folder)
    if manifest["task"] == "tutor":
        return [TUTOR_INPUT]
    return list(_task(manifest).example_frame(manifest).columns)


def output_columns(folder) -> list[tuple[str, str]]:
    """(name, MLflow type) of each output column, the label first."""
    manifest = read_manifest(folder)
    if manifest["task"] == "tutor":
        return list(TUTOR_OUTPUTS)
    columns = [("label", "string"), ("name", "string"), ("probability", "double")]
    if _task(manifest).top_k > 1:
        columns.append(("top_labels", "string"))
    return columns + [(REASON, "string")]


def input_example(folder) -> pd.DataFrame:
    manifest = read_manifest(folder)
    if manifest["task"] == "tutor":
        return pd.DataFrame({TUTOR_INPUT: ["A pen costs $2. How much do 3 pens cost?"]})
    return _task(manifest).example_frame(manifest).astype(str)


def _blank(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows whose every input column is missing or blank: nothing to score."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return pd.Series(False, index=frame.index)
    cells = frame[present].apply(lambda col: col.isna() | col.astype(str).str.strip().eq("") |
                                 col.astype(str).str.lower().isin(["nan", "none"]))
    return cells.all(axis=1)


def labelled_frame(predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """The outputs of a classifier for ``frame`` (the task's input columns), one row per input row, in order."""
    frame = frame.reset_index(drop=True)
    columns = [name for name, _ in output_columns(predictor.folder)]
    out = pd.DataFrame({c: pd.Series([None] * len(frame), dtype="object") for c in columns})
    out["probability"] = pd.Series([float("nan")] * len(frame), dtype="float64")
    blank = _blank(frame, input_columns(predictor.folder))
    out.loc[blank, REASON] = "empty input: every input column is blank"
    rows = frame.index[~blank]
    if len(rows):
        try:
            _fill(predictor, frame.loc[rows], out, rows)
        except DataError:  # one bad row must not cost the others their predictions: score them one by one
            for row in rows:
                try:
                    _fill(predictor, frame.loc[[row]], out, [row])
                except DataError as err:
                    out.loc[row, REASON] = str(err).split(": ", 1)[-1][:300]
    return out


def _fill(predictor, frame: pd.DataFrame, out: pd.DataFrame, rows) -> None:
    top_k = predictor.task_object.top_k
    idx, prob, _, _ = predictor.predict_frame(frame.reset_index(drop=True), top_k, source="input")
    labels = predictor.labels
    out.loc[rows, "label"] = [labels.values[i] for i in idx[:, 0]]
    out.loc[rows, "name"] = [labels.names[i] for i in idx[:, 0]]
    out.loc[rows, "probability"] = prob[:, 0].astype(float)
    if top_k > 1:
        out.loc[rows, "top_labels"] = [" ".join(labels.values[i] for i in row) for row in idx]


def tutor_frame(generator, questions: list, chunk: int = TUTOR_CHUNK) -> pd.DataFrame:
    """The tutor's answers, ``chunk`` problems at a time (each chunk decodes together on llama.cpp)."""
    from .solving.solve import solve

    rows: list[dict] = []
    for start in range(0, len(questions), chunk):
        part = ["" if q is None else str(q).strip() for q in questions[start:start + chunk]]
        asked = [q for q in part if q and q.lower() != "nan"]
        solved = iter(solve(generator, asked, generator.solving) if asked else [])
        for q in part:
            if not q or q.lower() == "nan":
                rows.append({"final_answer": None, "answer": None, "method": None, REASON: "empty question"})
                continue
            s = next(solved)
            rows.append({"final_answer": s.final_answer, "answer": s.answer, "method": str(s.method),
                         REASON: None if s.final_answer is not None else
                         ("refused: not a math question" if s.refused else "no final answer")})
    return pd.DataFrame(rows, columns=[name for name, _ in TUTOR_OUTPUTS])
